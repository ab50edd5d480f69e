"""A worker process: runs the tasks its node manager hands it, one at a time, in order.

The main thread executes; the client's I/O thread receives tasks into the inbox and sends
results. Task output written to sys.stdout/sys.stderr is forwarded to the task's owner.
A non-forced cancel reaches a running task as TaskCancelledError raised by a SIGUSR1 handler,
which also interrupts blocking sleeps and I/O (or as it enters its code, if it came while the
task was still loading). A cancelled task still queued here is skipped; a forced one that has
begun is reported back, and the node manager kills this worker.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, NoReturn

from . import lifecycle, object_io, serialization, session, task_context
from .client import CoreClient, set_current
from .config import load_config
from .local_objects import is_delivery
from .protocol import CancelledTaskStarted, LogRecord, ObjectValue, TaskExec, TaskResult
from .task_args import fill_refs


class ActorExitRequest(SystemExit):
    """Raised by exit_actor() in a sync actor; ends the actor after the current call."""


class TaskOutput(io.TextIOBase):
    """sys.stdout/sys.stderr of a worker: text written during a task goes to its owner."""

    def __init__(self, client: CoreClient, stream: str, fallback):
        self._client = client
        self._stream = stream
        self._fallback = fallback
        self._pid = os.getpid()

    @property
    def encoding(self) -> str:
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fallback.fileno()

    def write(self, text: str) -> int:
        spec = task_context.current_spec()
        if spec is None or not text:
            self._fallback.write(text)
            return len(text)
        self._client.publish_log(
            LogRecord(spec.task_id, spec.owner_id, spec.name or spec.function_name, self._pid, self._stream, text)
        )
        return len(text)

    def flush(self) -> None:
        self._fallback.flush()


class Executor:
    def __init__(self, client: CoreClient):
        self.client = client
        self.config = load_config()
        self.functions: dict[bytes, Any] = {}
        self.current: TaskExec | None = None
        self.in_user_code = False
        self.cancel_target: bytes | None = None
        self.cancelled_queued: set[bytes] = set()
        self.begun_task_id: bytes | None = None  # the task the loop took to run, until it is reported
        self.cancel_lock = threading.Lock()  # the loop takes a task or skips it, never both
        self.main_thread = threading.main_thread()
        self.actor_instance = None
        self.actor_host = None
        self.exit_requested = False
        client.on_block = self.on_block
        signal.signal(signal.SIGUSR1, self._on_cancel_signal)
        client.listen_for_cancels(self.cancel)

    # -- cancellation -----------------------------------------------------------------------

    def cancel(self, task_id: bytes, force: bool = False) -> None:
        """Called on the I/O thread (or, for cancels that came before this executor, on the main thread)."""
        if self.actor_host is not None and self.actor_host.cancel(task_id):
            return
        with self.cancel_lock:
            begun = task_id == self.begun_task_id
            if not begun:
                self.cancelled_queued.add(task_id)
            elif not force:
                # Set even before the task's own code runs (its function or arguments may still be
                # loading, where the signal is ignored): run_task checks it as it enters that code.
                self.cancel_target = task_id
        if not begun:
            return
        if force:
            # The results of the tasks before it go out ahead of this message: the node manager
            # sees this task as the one running here, and kills this worker for it alone.
            self.client.send(CancelledTaskStarted(task_id))
            return
        current = self.current
        if current is not None and current.spec.task_id == task_id:
            assert self.main_thread.ident is not None  # the main thread is running
            signal.pthread_kill(self.main_thread.ident, signal.SIGUSR1)

    def _on_cancel_signal(self, signum, frame) -> None:
        current = self.current
        if (
            self.in_user_code
            and current is not None
            and self.cancel_target == current.spec.task_id
            and threading.current_thread() is self.main_thread
        ):
            self._raise_cancelled(current.spec)

    def _raise_cancelled(self, spec) -> NoReturn:
        from ..exceptions import TaskCancelledError

        self.cancel_target = None
        raise TaskCancelledError(spec.task_id.hex())

    # -- nested waiting -----------------------------------------------------------------------

    def on_block(self, blocked: bool) -> None:
        """get()/wait() inside a task: lend the CPU back and hand back queued tasks."""
        if self.current is None or threading.current_thread() is not self.main_thread:
            return
        if task_context.process.actor_id is not None:
            return  # an actor's worker is its own; its calls cannot move elsewhere
        returned = []
        if blocked:
            while True:
                try:
                    task = self.client.inbox.get_nowait()
                except Exception:
                    break
                if task is None:
                    self.client.inbox.put(None)
                    break
                returned.append(task.spec.task_id)
                self._release_arg_pins(task)
        self.client.blocked(blocked, returned)

    def _release_arg_pins(self, task: TaskExec) -> None:
        with self.client.objects.cond:
            self.client.objects.released_pins.extend(v.object_id for v in task.arg_values if is_delivery(v))

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        inbox = self.client.inbox
        while True:
            task = inbox.get()
            if task is None:
                return
            with self.cancel_lock:
                skipped = task.spec.task_id in self.cancelled_queued
                if skipped:
                    self.cancelled_queued.discard(task.spec.task_id)
                else:
                    self.begun_task_id = task.spec.task_id
                    self.cancel_target = None  # a late cancel of the task before is not this one's
            if skipped:
                self._release_arg_pins(task)
                self._finish_cancelled(task)
                continue
            self.execute(task)
            # Reported (its result is queued ahead of anything cancel() sends): a retry of it may queue here.
            self.begun_task_id = None

    def _load(self, function_id: bytes):
        function = self.functions.get(function_id)
        if function is None:
            payload = self.client.functions.get(function_id)
            if not payload:
                raise RuntimeError(f"function {function_id.hex()} was never exported to this worker")
            function = self.functions[function_id] = serialization.load_definition(payload)
        return function

    def materialize(self, value: ObjectValue):
        return object_io.materialize(self.client, value)

    def _resolve_args(self, task: TaskExec):
        spec = task.spec
        values = []
        for value in task.arg_values:
            resolved = self.materialize(value)
            if value.is_error:
                raise resolved
            values.append(resolved)
        if spec.args_in_store:
            args, kwargs = values.pop()
        elif spec.args is not None:
            args, kwargs = serialization.deserialize_bytes(spec.args)
        else:
            args, kwargs = (), {}
        args, kwargs = fill_refs(args, kwargs, values)
        return args, kwargs, values

    def execute(self, task: TaskExec) -> None:
        spec = task.spec
        if spec.actor_creation is not None:
            self._create_actor(task)
        elif spec.actor_id is not None and self.actor_host is not None and self.actor_host.concurrent:
            self.actor_host.submit(task)
        else:
            self.run_task(task, main_thread=True)

    def _target(self, spec):
        if spec.actor_id is not None:
            if self.actor_instance is None:
                raise RuntimeError("this worker hosts no actor")
            return getattr(self.actor_instance, spec.function_name)
        return self._load(spec.function_id)

    def run_task(self, task: TaskExec, main_thread: bool = False) -> None:
        """Run one task or actor call to completion in this thread and report it."""
        spec = task.spec
        if main_thread:
            self.current = task
        started = time.perf_counter()
        retriable = False
        saved_env = None
        result = None
        try:
            try:
                target = self._target(spec)
                args, kwargs, resolved = self._resolve_args(task)
                task_context.set_current(spec, task.gpu_ids, {id(v) for v in resolved})
                saved_env = self._apply_env(spec, task.gpu_ids)
                self.in_user_code = main_thread
                try:
                    if main_thread and self.cancel_target == spec.task_id:
                        self._raise_cancelled(spec)  # cancelled while it was starting
                    result = target(*args, **kwargs)
                finally:
                    self.in_user_code = False
                del args, kwargs, resolved
                values = self._store_returns(spec, result)
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the owner
                self.in_user_code = False
                values, retriable = self.failure_values(spec, exc)
        finally:
            if main_thread:
                self.cancel_target = None
            if saved_env is not None:
                self._restore_env(saved_env)
            sys.stdout.flush()
            sys.stderr.flush()
            task_context.clear_current()
            if main_thread:
                self.current = None
        self.client.finish_task(TaskResult(spec.task_id, values, retriable, time.perf_counter() - started))
        # Refs inside the result stay alive until the result is queued ahead of their release.
        del result
        if self.exit_requested:
            self.stop_actor_process()

    def failure_values(self, spec, exc: BaseException):
        from ..exceptions import ActorDiedError, AsyncioActorExit

        if isinstance(exc, (AsyncioActorExit, ActorExitRequest)):
            self.request_exit("The actor called exit_actor().")
            error = ActorDiedError(
                "The actor exited intentionally (exit_actor()).",
                actor_id=spec.actor_id.hex() if spec.actor_id else None,
            )
            return [self._error_value(spec, error, index) for index in range(spec.num_returns)], False
        return self._failure(spec, exc)

    # -- actors -------------------------------------------------------------------------------

    def _create_actor(self, task: TaskExec) -> None:
        from ..exceptions import ActorDiedError, RayTaskError

        spec = task.spec
        options = spec.actor_creation
        assert options is not None and spec.actor_id is not None  # a constructor call names its actor
        error = None
        try:
            cls = self._load(spec.function_id)
            args, kwargs, resolved = self._resolve_args(task)
            task_context.process.actor_id = spec.actor_id
            task_context.process.actor_name = options.get("name")
            task_context.process.actor_restarted = bool(options.get("restarted"))
            task_context.process.actor_resources = dict(options.get("resources") or {})
            if spec.job_id is not None:
                task_context.process.job_id = spec.job_id.hex()  # for threads the actor starts itself
            task_context.set_current(spec, task.gpu_ids, {id(v) for v in resolved})
            self._apply_env(spec, task.gpu_ids)  # kept for the actor's life
            self.current = task
            self.in_user_code = True
            try:
                instance = cls.__new__(cls)
                instance.__init__(*args, **kwargs)
            finally:
                self.in_user_code = False
                self.current = None
            self.actor_instance = instance
            from .actor_host import ActorHost

            self.actor_host = ActorHost(self, options)
        except BaseException as exc:  # noqa: BLE001
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            cause = RayTaskError(
                f"{options.get('class_name', 'Actor')}.__init__",
                text,
                exc,
                pid=os.getpid(),
                ip=self.client.node_info.node_ip,
            )
            error = ActorDiedError(
                cause, actor_id=spec.actor_id.hex(), class_name=options.get("class_name"), name=options.get("name")
            )
        finally:
            task_context.clear_current()
        values = (
            [self._error_value(spec, error, 0)]
            if error is not None
            else [
                ObjectValue(
                    spec.task_id + b"\x00\x00\x00\x01", serialization.serialize(None).to_bytes(), -1, 0, False, []
                )
            ]
        )
        self.client.finish_task(TaskResult(spec.task_id, values, False, 0.0))

    def request_exit(self, reason: str) -> None:
        from .protocol import ActorExited

        if not self.exit_requested and task_context.process.actor_id is not None:
            self.exit_requested = True
            self.client.send(ActorExited(task_context.process.actor_id, reason))

    def stop_actor_process(self) -> None:
        """exit_actor(): let the queued messages go out, then end the process."""
        self.client.close()
        os._exit(0)

    def _failure(self, spec, exc: BaseException):
        from ..exceptions import RayTaskError, TaskCancelledError

        if isinstance(exc, TaskCancelledError):
            error: BaseException = TaskCancelledError(spec.task_id.hex())
            retriable = False
        else:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            name = spec.name or spec.function_name
            error = RayTaskError(name, text, exc, pid=os.getpid(), ip=self.client.node_info.node_ip)
            retriable = self._should_retry(spec, exc)
        return [self._error_value(spec, error, index) for index in range(spec.num_returns)], retriable

    def _should_retry(self, spec, exc: BaseException) -> bool:
        if not spec.retry_exceptions:
            return False
        if spec.retry_exception_types:
            allowed = serialization.loads_plain(spec.retry_exception_types)
            return isinstance(exc, tuple(allowed))
        return isinstance(exc, Exception)

    def _error_value(self, spec, error: BaseException, index: int) -> ObjectValue:
        object_id = spec.task_id + (index + 1).to_bytes(4, "big")
        try:
            data = serialization.serialize(error).to_bytes()
        except TypeError:
            from ..exceptions import RayTaskError

            # The cause itself cannot be pickled: keep its text.
            fallback = RayTaskError(
                getattr(error, "function_name", spec.function_name),
                getattr(error, "traceback_str", "") or repr(error),
                RuntimeError(f"{type(getattr(error, 'cause', error)).__name__}: {getattr(error, 'cause', error)}"),
                pid=os.getpid(),
            )
            data = serialization.serialize(fallback).to_bytes()
        return ObjectValue(object_id, data, -1, 0, True, [])

    def _store_returns(self, spec, result) -> list:
        count = spec.num_returns
        if count == 1:
            outputs = [result]
        elif count == 0:
            outputs = []
        else:
            try:
                outputs = list(result)
            except TypeError:
                raise ValueError(
                    f"task {spec.function_name} was declared with num_returns={count} but returned a "
                    f"non-iterable {type(result).__name__}"
                ) from None
            if len(outputs) != count:
                raise ValueError(
                    f"task {spec.function_name} was declared with num_returns={count} but returned "
                    f"{len(outputs)} values"
                )
        return [self.store_value(spec.task_id + (i + 1).to_bytes(4, "big"), v) for i, v in enumerate(outputs)]

    def store_value(self, object_id: bytes, value) -> ObjectValue:
        serialized = serialization.serialize(value)
        return object_io.store_serialized(self.client, object_id, serialized, self.config.inline_object_max_bytes)

    def _apply_env(self, spec, gpu_ids: list):
        changes = dict(spec.env_vars or {})
        if gpu_ids or "GPU" in (spec.resources or {}):
            changes["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpu_ids)
        if not changes:
            return None
        saved = {name: os.environ.get(name) for name in changes}
        os.environ.update({k: str(v) for k, v in changes.items()})
        return saved

    @staticmethod
    def _restore_env(saved: dict) -> None:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def _finish_cancelled(self, task: TaskExec) -> None:
        from ..exceptions import TaskCancelledError

        spec = task.spec
        values = [self._error_value(spec, TaskCancelledError(spec.task_id.hex()), i) for i in range(spec.num_returns)]
        self.client.finish_task(TaskResult(spec.task_id, values, False, 0.0))


def main(worker_id: bytes, options: dict) -> None:
    lifecycle.set_process_title("shoal::worker")
    client = CoreClient(options["endpoint"], "worker", client_id=worker_id)
    client.connect()
    set_current(client)
    task_context.process.mode = "worker"
    task_context.process.worker_id = worker_id
    task_context.process.node_id = client.node_info.node_id
    executor = Executor(client)
    task_context.process.executor = executor
    session.attach_worker(client)
    sys.stdout = TaskOutput(client, "stdout", sys.__stdout__)
    sys.stderr = TaskOutput(client, "stderr", sys.__stderr__)
    profile_dir = os.environ.get("SHOAL_PROFILE_DIR")
    try:
        if profile_dir:
            import cProfile

            profiler = cProfile.Profile()
            try:
                profiler.runcall(executor.run)
            finally:
                profiler.dump_stats(os.path.join(profile_dir, f"worker-{os.getpid()}.prof"))
        else:
            executor.run()
    finally:
        client.close()
