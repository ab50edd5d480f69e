"""The core public API: init, shutdown, get, put, wait, cancel and cluster queries.

Every function validates its arguments at the call site and raises TypeError/ValueError with
a message naming the problem. The process's one CoreClient (driver or worker) does the work;
the session (`_core.session`) holds it.
"""

from __future__ import annotations

import atexit
import logging
import math
import numbers
import os
import sys
import warnings
from typing import Any

from . import exceptions
from ._core import client as client_module
from ._core import config, feasibility, frame_names, node_launcher, object_io, serialization, session, task_context
from ._core.client import CoreClient
from ._core.driver_logs import DriverLogPrinter
from ._core.ids import job_id_of
from ._core.local_objects import PinnedLocation
from ._core.protocol import CancelTask
from ._core.session import Session
from .init_context import RayContext
from .object_ref import ObjectRef

logger = logging.getLogger(__name__)

_warned: set = set()

_IGNORED_INIT_OPTIONS = {
    "include_dashboard",
    "dashboard_host",
    "dashboard_port",
    "configure_logging",
    "logging_level",
    "logging_format",
    "logging_config",
    "job_config",
    "labels",
    "local_mode",
    "_temp_dir",
    "_system_config",
    "_node_ip_address",
    "_redis_password",
    "enable_resource_isolation",
    "_metrics_export_port",
    "_plasma_directory",
    "_enable_object_reconstruction",
    "storage",
    "_memory",
    "runtime_env_config",
    "log_to_driver_level",
}


# -- the decorator ------------------------------------------------------------------------


def remote(*args, **options) -> Any:
    """Make a function a task (or a class an actor) that runs on the cluster.

    Use bare (`@shoal.remote`) or with options (`@shoal.remote(num_cpus=2, num_returns=2)`).

    Raises:
        TypeError: Applied to something that is neither a function nor a class, or given
            positional arguments besides the target.
        ValueError: An unknown option or a bad option value.
    """
    # Typed Any: what comes back (a RemoteFunction, an ActorClass, or a decorator making one)
    # depends on the argument, as with Ray's own decorator.
    if len(args) == 1 and not options and callable(args[0]):
        return _make(args[0], {})
    if args:
        raise TypeError(
            "@shoal.remote takes either a function/class or keyword options, e.g. "
            "@shoal.remote(num_cpus=2); got positional arguments " + ", ".join(type(a).__name__ for a in args)
        )

    def decorate(target):
        return _make(target, options)

    return decorate


def _make(target, options: dict):
    if isinstance(target, type):
        from .actor import ActorClass

        return ActorClass(target, options)
    if callable(target):
        from .remote_function import RemoteFunction

        return RemoteFunction(target, options)
    raise TypeError(f"@shoal.remote expects a function or a class, got {type(target).__name__}")


# -- init / shutdown -----------------------------------------------------------------------


def _check_number(name: str, value, integer: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if integer and not float(value).is_integer():
        raise ValueError(f"{name} must be a whole number, got {value}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def init(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    resources: dict | None = None,
    object_store_memory: int | None = None,
    namespace: str | None = None,
    runtime_env: dict | None = None,
    ignore_reinit_error: bool = False,
    log_to_driver: bool = True,
    _token: str | None = None,
    **kwargs,
) -> RayContext:
    """Start or connect to a shoal cluster.

    With no address, starts an embedded single-node cluster owned by this process: it stops
    when this process exits, however it exits. `address="auto"` connects to the cluster
    started on this machine with `shoal start`.

    Args:
        address: None (start a cluster), "auto", or a node address.
        num_cpus: CPUs the embedded node offers (default: all cores).
        num_gpus: GPUs it offers (default: detected).
        resources: Custom resources, e.g. {"accelerator": 2}.
        object_store_memory: Bytes for the shared-memory object store (default 30% of RAM).
        namespace: Namespace for named actors.
        runtime_env: {"env_vars": {...}} applied to every worker.
        ignore_reinit_error: Return the running context instead of raising when called twice
            with different arguments.
        log_to_driver: Print workers' output here, prefixed with the task name and pid.

    Returns:
        A RayContext with the cluster's address info.

    Raises:
        TypeError, ValueError: Bad arguments.
        RuntimeError: Already initialized with different arguments.
        ConnectionError: address="auto" found no running cluster.
    """
    unknown = set(kwargs) - _IGNORED_INIT_OPTIONS
    if unknown:
        raise TypeError(f"init() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    if address is not None and not isinstance(address, str):
        raise TypeError(f"address must be a string such as 'auto', got {type(address).__name__}")
    _check_number("num_cpus", num_cpus, integer=False)
    _check_number("num_gpus", num_gpus, integer=True)
    _check_number("object_store_memory", object_store_memory, integer=True)
    if object_store_memory is not None and object_store_memory < 1024 * 1024:
        raise ValueError(f"object_store_memory must be at least 1 MiB, got {object_store_memory}")
    if resources is not None:
        if not isinstance(resources, dict):
            raise TypeError(f"resources must be a dict of name to amount, got {type(resources).__name__}")
        for name, amount in resources.items():
            if name in ("CPU", "GPU"):
                raise ValueError(f"use num_cpus/num_gpus instead of resources={{'{name}': ...}}")
            _check_number(f"resources[{name!r}]", amount)
    if namespace is not None and not isinstance(namespace, str):
        raise TypeError(f"namespace must be a string, got {type(namespace).__name__}")
    if runtime_env is not None:
        from .options import runtime_env_problem

        if not isinstance(runtime_env, dict):
            raise TypeError(f"runtime_env must be a dict, got {type(runtime_env).__name__}")
        problem = runtime_env_problem(runtime_env)
        if problem:
            raise ValueError(f"runtime_env: {problem}")
    key = (address, num_cpus, num_gpus, _freeze(resources), object_store_memory, namespace, _freeze(runtime_env))
    with session.lock:
        running = session.current()
        if running is not None:
            if task_context.process.mode == "worker" or ignore_reinit_error or key == running.init_key:
                return _context(running)
            raise RuntimeError(
                "shoal.init() was already called with different arguments. Call shoal.shutdown() "
                "first to start a new cluster, or pass ignore_reinit_error=True to keep the running one."
            )
        namespace = namespace or f"anonymous_{os.urandom(4).hex()}"
        env_vars = (runtime_env or {}).get("env_vars")
        head = None
        token = None
        if address is None or address == "local":
            store_bytes = object_store_memory or config.default_object_store_bytes()
            total = node_launcher.node_resources(num_cpus, num_gpus, resources, store_bytes, "127.0.0.1")
            head = node_launcher.start_node(total, store_bytes, env_vars, embedded=True)
            endpoint = head.endpoint
        else:
            if address == "auto" or address.startswith("ipc://") is False and ":" not in address:
                # The head if it runs here, else a node of a cluster this machine joined.
                found = node_launcher.read_address() or next(iter(node_launcher.read_members()), None)
                if found is None:
                    raise ConnectionError(
                        "Could not find a running shoal cluster on this machine. Start one with "
                        "'shoal start --head', or call shoal.init() with no address."
                    )
                endpoint = found.endpoint
            elif address.startswith("ipc://"):
                endpoint = address
            elif (local := node_launcher.local_node_at(address)) is not None:
                # A node on this machine: its ipc socket, and its shared memory, beat TCP.
                endpoint = local.endpoint
            else:
                endpoint, token = _tcp_endpoint(address, _token)
        client = CoreClient(endpoint, "driver", namespace=namespace, token=token)
        try:
            client.connect()
        except BaseException:
            if head is not None:
                node_launcher.stop_node(head)
            raise
        client_module.set_current(client)
        started = Session(client, head, key, log_to_driver, namespace, DriverLogPrinter(_name_warning_locations))
        if session.hooks.log_handler is not None:
            from .util.output import adapt_log_handler

            started.log_handler = adapt_log_handler(session.hooks.log_handler)
        client.on_logs = lambda records: _print_logs(started, records)
        task_context.process.mode = "driver"
        task_context.process.node_id = client.node_info.node_id
        task_context.process.namespace = namespace
        task_context.process.job_id = job_id_of(client.client_id).hex()
        session.set_current(started)
        return _context(started)


def _tcp_endpoint(address: str, token: str | None) -> tuple[str, str]:
    """tcp:// endpoint and token for `init(address="host:port")`."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address must be 'auto', 'local' or 'host:port', got {address!r}")
    token = token or config.cluster_token()
    if token is None:
        local = node_launcher.read_address()
        if local is not None and local.tcp_address and local.tcp_address.endswith(":" + port):
            token = local.token
    if not token:
        raise ConnectionError(
            f"Connecting to {address} needs the cluster's token: set SHOAL_TOKEN to the contents of the "
            "token file that `shoal start --port ...` named (SHOAL_TOKEN=$(cat FILE))."
        )
    return f"tcp://{host}:{port}", token


def _freeze(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def _context(running: Session) -> RayContext:
    info = running.client.node_info
    return RayContext(
        {
            "address": running.client.endpoint,
            "node_id": info.node_id.hex(),
            "node_ip_address": info.node_ip,
            "session_dir": info.session_dir,
            "namespace": running.namespace,
            "resources": dict(info.resources),
        }
    )


def is_initialized() -> bool:
    return session.current() is not None


def shutdown(_exiting_interpreter: bool = False) -> None:
    """Disconnect from the cluster; an embedded cluster is stopped and cleaned up."""
    if session.current() is not None and task_context.process.mode != "worker":
        # Outside the lock: a listener may wait for a thread that is itself reading cluster state.
        session.shutdown_started()
    with session.lock:
        running = session.current()
        if running is None or task_context.process.mode == "worker":
            return
        session.set_current(None)
        feasibility.reset()
        client_module.set_current(None)
        try:
            running.client.close()
        finally:
            if running.log_printer is not None:
                running.log_printer.close()  # after the client: no record comes after this
            if running.head is not None:
                node_launcher.stop_node(running.head)


atexit.register(shutdown)
session.set_starter(init)


# -- objects -------------------------------------------------------------------------------


def put_serialized(client: CoreClient, serialized, what: str = "The object passed to shoal.put()") -> ObjectRef:
    """Store an already serialized value under a fresh id (`put`'s path, and large task arguments')."""
    object_id = session.next_task_id() + b"\x00\x00\x00\x00"
    ref = ObjectRef(object_id)
    object_io.put_serialized(client, object_id, serialized, what)
    return ref


def put(value, *, _owner=None) -> ObjectRef:
    """Store a value in the object store; returns an ObjectRef to it.

    Raises:
        TypeError: `value` is an ObjectRef, or cannot be pickled.
        ValueError: a driver connected over TCP puts more than the cluster takes in one message
            (SHOAL_MAX_MESSAGE_BYTES).
    """
    if isinstance(value, ObjectRef):
        raise TypeError(
            "Calling 'put' on an ObjectRef is not allowed. To store a reference, wrap it in a list (shoal.put([ref]))."
        )
    client = session.client()
    return put_serialized(client, serialization.serialize(value))


def _client_for_get(refs: list) -> CoreClient:
    """The client to wait through; refs from a cluster this process has left fail at once.

    Raises:
        OwnerDiedError: A ref was made in a session that `shutdown()` ended (nobody will ever
            make its object), with no new cluster started on its account.
    """
    check_current_refs(refs)
    return session.client()


def check_current_refs(refs) -> None:
    """Raise OwnerDiedError for the first ref made in a session that has ended (see _client_for_get)."""
    for ref in refs:
        if session.belongs_to_ended_session(ref._client):
            raise exceptions.OwnerDiedError(
                ref.hex(),
                reason="This ref belongs to a cluster that was shut down: shoal.shutdown() ended the "
                "session that made it, and its object went with it. Make the object again in the current session.",
            )


def _on_block(blocked: bool) -> None:
    executor = task_context.process.executor
    if executor is not None:
        executor.on_block(blocked)


def _check_timeout(timeout) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"timeout must be a number of seconds or None, got {type(timeout).__name__}")
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout}")


def get(object_refs, *, timeout: float | None = None) -> Any:
    """Wait for and return the value(s) of one ObjectRef or a list of them.

    Raises:
        GetTimeoutError: Not ready within `timeout` seconds.
        RayTaskError: The task failed (also an instance of its exception's type).
        TaskCancelledError, WorkerCrashedError: The task was cancelled or its worker died.
        ValueError: `object_refs` is not an ObjectRef or a list of ObjectRefs.
    """
    _check_timeout(timeout)
    single = isinstance(object_refs, ObjectRef)
    if single:
        refs = [object_refs]
    elif isinstance(object_refs, (list, tuple)):
        refs = list(object_refs)
        for ref in refs:
            if type(ref) is not ObjectRef and not isinstance(ref, ObjectRef):
                raise ValueError(
                    f"'object_refs' must be an ObjectRef or a list of ObjectRefs; the list holds a {type(ref).__name__}"
                )
    else:
        if task_context.arrived_as_argument(object_refs):
            if "resolved-arg" not in _warned:
                _warned.add("resolved-arg")
                warnings.warn(
                    "shoal.get() was called on a task argument that was passed as an ObjectRef. Top-level "
                    "ObjectRef arguments arrive already resolved to their values, so get() returns the value "
                    "unchanged; you can drop the get() call.",
                    stacklevel=2,
                )
            return object_refs
        raise ValueError(
            f"'object_refs' must be an ObjectRef or a list of ObjectRefs, got {type(object_refs).__name__}"
        )
    client = _client_for_get(refs)
    if not refs:
        return []
    ids = [ref._id for ref in refs]
    client.flush_pending()
    if not session.hooks.wait_listeners or timeout == 0:
        return _get_values(client, refs, ids, timeout, single)
    from .util.output import WaitWatch

    watch = WaitWatch("get", refs, ids, len(ids), timeout, client.objects, _on_block)
    outcome = "error"
    try:
        result = _get_values(client, refs, ids, timeout, single, watch.on_block)
        outcome = "done"
        return result
    except exceptions.GetTimeoutError:
        outcome = "timeout"
        raise
    except KeyboardInterrupt:
        outcome = "interrupted"
        raise
    finally:
        watch.end(outcome)


def _get_values(client: CoreClient, refs: list, ids: list, timeout, single: bool, on_block=_on_block):
    try:
        values = client.objects.collect(ids, timeout, client.request_objects, on_block)
    except RuntimeError as exc:
        raise exceptions.RaySystemError(str(exc)) from None
    except KeyboardInterrupt:
        _cancel_on_interrupt(client, refs)
        raise
    if values is None:
        raise exceptions.GetTimeoutError(f"Get timed out: some object(s) not ready after {timeout} s.")
    results = []
    for index, value in enumerate(values):
        try:
            if type(value) is PinnedLocation:
                result = object_io.materialize_location(client, value)
                value = value.value
            else:
                result = object_io.materialize(client, value)
        except BaseException:
            # collect() holds every location it returned: give back those never read.
            for later in values[index + 1 :]:
                if type(later) is PinnedLocation:
                    client.objects.view_released(later)
            raise
        if value.is_error:
            if isinstance(result, exceptions.RayTaskError):
                raise result.as_instanceof_cause()
            raise result
        results.append(result)
    return results[0] if single else results


def wait(object_refs, *, num_returns: int = 1, timeout: float | None = None, fetch_local: bool = True):
    """Wait until `num_returns` of the refs are ready or `timeout` passes.

    Returns:
        (ready, not_ready): two lists of ObjectRefs, each in the order given.
    """
    if isinstance(object_refs, ObjectRef) or not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait() expects a list of ObjectRefs, got {type(object_refs).__name__}")
    refs = list(object_refs)
    for ref in refs:
        if type(ref) is not ObjectRef and not isinstance(ref, ObjectRef):
            raise TypeError(f"wait() expects a list of ObjectRefs; the list holds a {type(ref).__name__}")
    ids = [ref._id for ref in refs]
    if len(set(ids)) != len(ids):
        raise ValueError("wait() requires a list of unique ObjectRefs; the list has duplicates")
    if isinstance(num_returns, bool) or not isinstance(num_returns, int):
        raise TypeError(f"num_returns must be an int, got {type(num_returns).__name__}")
    if num_returns <= 0:
        raise ValueError(f"num_returns must be > 0, got {num_returns}")
    if num_returns > len(refs):
        raise ValueError(f"num_returns ({num_returns}) cannot exceed the number of refs ({len(refs)})")
    _check_timeout(timeout)
    client = _client_for_get(refs)
    client.flush_pending()
    if not session.hooks.wait_listeners or timeout == 0:
        ready_ids = _wait_ready(client, refs, ids, num_returns, timeout)
    else:
        from .util.output import WaitWatch

        watch = WaitWatch("wait", refs, ids, num_returns, timeout, client.objects, _on_block)
        outcome = "error"
        try:
            ready_ids = _wait_ready(client, refs, ids, num_returns, timeout, watch.on_block)
            outcome = "done" if len(ready_ids) >= num_returns else "timeout"
        except KeyboardInterrupt:
            outcome = "interrupted"
            raise
        finally:
            watch.end(outcome)
    if len(ready_ids) == len(ids) and num_returns == len(ids):
        return refs, []
    ready_set = set(ready_ids[:num_returns])
    ready, not_ready = [], []
    for object_id, ref in zip(ids, refs):
        (ready if object_id in ready_set else not_ready).append(ref)
    return ready, not_ready


def _wait_ready(client: CoreClient, refs: list, ids: list, num_returns: int, timeout, on_block=_on_block) -> list:
    try:
        return client.objects.wait_ready(ids, num_returns, timeout, client.request_objects, on_block)
    except KeyboardInterrupt:
        _cancel_on_interrupt(client, refs)
        raise


_interrupted_tasks: set = set()


def _cancel_on_interrupt(client: CoreClient, refs: list) -> None:
    """Ctrl-C (or a kernel interrupt) while waiting cancels the tasks being waited on.

    Only tasks still running or queued are cancelled (and counted in the note): a ref whose
    value is here already is finished. The first interrupt cancels them (a running task sees
    TaskCancelledError); interrupting again while waiting on the same tasks kills their workers.
    """
    if task_context.process.mode != "driver":
        return
    objects = client.objects
    with objects.cond:
        unfinished = [ref for ref in refs if ref._id not in objects.values]
    task_ids = {ref._id[:16] for ref in unfinished if ref._id[16:20] != b"\x00\x00\x00\x00"}
    if not task_ids:
        return
    waited = len({ref._id[:16] for ref in refs if ref._id[16:20] != b"\x00\x00\x00\x00"})
    force = bool(task_ids & _interrupted_tasks)
    for task_id in task_ids:
        client.outgoing.append(CancelTask(task_id, force, True))
    client.flush()
    _interrupted_tasks.clear()
    if not force:
        _interrupted_tasks.update(task_ids)
    count = f"{len(task_ids)} task{'s' if len(task_ids) != 1 else ''}"
    if force:
        note = f"killed the workers of {count} still running after the first interrupt"
    else:
        note = f"cancelled {count} still running or queued"
    if waited > len(task_ids):
        note += f" ({waited - len(task_ids)} of the {waited} waited on had finished)"
    try:
        sys.stderr.write(f"shoal: interrupted; {note}.\n")
    except Exception:
        pass


def cancel(object_ref, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that produces `object_ref`; its get() raises TaskCancelledError.

    A running task is interrupted (even in time.sleep or blocking I/O); `force=True` kills
    its worker process. `recursive` also cancels the tasks it submitted.
    """
    if not isinstance(object_ref, ObjectRef):
        raise TypeError(f"cancel() expects an ObjectRef, got {type(object_ref).__name__}")
    client = _client_for_get([object_ref])
    client.send(CancelTask(object_ref.binary()[:16], bool(force), bool(recursive)))


# -- cluster queries -----------------------------------------------------------------------


def _cluster_info():
    try:
        return feasibility.cluster_info(session.client())
    except RuntimeError as exc:
        raise exceptions.RaySystemError(str(exc)) from None


def cluster_resources() -> dict:
    """Total resources of the cluster."""
    return dict(_cluster_info().total)


def available_resources() -> dict:
    """Resources not in use right now."""
    return {k: v for k, v in _cluster_info().available.items() if v > 0}


def nodes() -> list:
    """The cluster's nodes, as in Ray's ray.nodes()."""
    return list(_cluster_info().nodes)


def get_gpu_ids() -> list:
    """GPU ids assigned to the current task or actor ([] in the driver)."""
    return list(task_context.current_gpu_ids())


# -- logs ----------------------------------------------------------------------------------


def _print_logs(running: Session, records: list) -> None:
    if not running.log_to_driver:
        return
    handler = running.log_handler
    if handler is not None:
        handler(records)
        return
    if running.log_printer is not None:
        running.log_printer.print_records(records)


def _name_warning_locations(line: str) -> str:
    """A worker's warning at a function defined in a notebook cell names the cell (`Cell In[N]`)."""
    return frame_names.name_warning_locations(line, exceptions.shell_cell_numbers())
