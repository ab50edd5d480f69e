"""Remote functions: `@shoal.remote` on a function, `.remote()` and `.options()`.

The function is pickled once (by content hash) the first time it is called, and exported to
the node manager once per client; each `.remote()` call then costs one small task spec.
"""

from __future__ import annotations

import functools

from . import options as option_table
from ._core import feasibility, serialization, session, task_context
from ._core.config import INLINE_OBJECT_MAX_BYTES
from ._core.protocol import TaskSpec
from ._core.task_args import lift_refs
from .api import check_current_refs, put_serialized
from .object_ref import ObjectRef

DEFAULT_MAX_RETRIES = 3


class RemoteFunction:
    """A function that runs as a task on the cluster. Call `.remote(*args)` to run it."""

    def __init__(self, function, task_options: dict):
        if not callable(function):
            raise TypeError(f"@shoal.remote expects a function or class, got {type(function).__name__}")
        option_table.validate(task_options, option_table.TASK_OPTIONS, f"remote function {function.__qualname__}")
        self._function = function
        self._options = dict(task_options)
        self._definition: tuple[bytes, bytes] | None = None
        self._prepared: dict | None = None
        functools.update_wrapper(self, function)

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"Remote functions cannot be called directly. Instead of running '{self._function.__name__}()', "
            f"try '{self._function.__name__}.remote()'."
        )

    def __reduce__(self):
        return (RemoteFunction, (self._function, self._options))

    def remote(self, *args, **kwargs):
        """Run the function as a task; returns an ObjectRef (or a list for num_returns > 1)."""
        return self._submit(args, kwargs, self._options, self._prepare())

    def options(self, **task_options) -> _BoundOptions:
        """Override task options for the calls made through the returned object."""
        option_table.validate(task_options, option_table.TASK_OPTIONS, f"remote function {self._function.__qualname__}")
        merged = {**self._options, **task_options}
        return _BoundOptions(self, merged)

    def bind(self, *args, **kwargs):
        raise NotImplementedError("shoal does not implement Ray's DAG API (.bind) yet; use .remote()")

    def _prepare(self, overrides: dict | None = None) -> dict:
        prepared = self._prepared
        if prepared is not None and overrides is None:
            return prepared
        opts = self._options if overrides is None else overrides
        if self._definition is None:
            self._definition = serialization.pickle_definition(self._function)
        retry = opts.get("retry_exceptions", False)
        prepared = {
            "resources": placed_resources(option_table.task_resources(opts), opts),
            "num_returns": 1 if opts.get("num_returns") is None else opts["num_returns"],
            "max_retries": DEFAULT_MAX_RETRIES if opts.get("max_retries") is None else opts["max_retries"],
            "retry_exceptions": bool(retry),
            "retry_types": serialization.dumps_plain(tuple(retry)) if isinstance(retry, (list, tuple)) else None,
            "name": opts.get("name"),
            "env_vars": ((opts.get("runtime_env") or {}).get("env_vars")) or None,
            "strategy": strategy_wire(opts.get("scheduling_strategy")),
            "function_name": getattr(self._function, "__qualname__", "task"),
        }
        if prepared["num_returns"] in ("dynamic", "streaming"):
            raise ValueError("num_returns='dynamic'/'streaming' (generators) is not supported by shoal yet")
        if overrides is None:
            self._prepared = prepared
        return prepared

    def _submit(self, args: tuple, kwargs: dict, opts: dict, prepared: dict):
        client = session.client()
        assert self._definition is not None  # _prepare pickled it
        function_id, payload = self._definition
        client.export_function(function_id, payload)
        feasibility.check_feasible(prepared["resources"], prepared["function_name"])
        return submit_call(client, function_id, prepared, args, kwargs)


class _BoundOptions:
    def __init__(self, function: RemoteFunction, merged: dict):
        self._function = function
        self._merged = merged
        self._prepared = None

    def remote(self, *args, **kwargs):
        function = self._function
        if self._prepared is None:
            self._prepared = function._prepare(self._merged)
        return function._submit(args, kwargs, self._merged, self._prepared)

    def options(self, **task_options):
        return self._function.options(**{**self._merged, **task_options})


def placed_resources(resources: dict, opts: dict) -> dict:
    """Redirect a resource request into a placement group when the options name one."""
    strategy = opts.get("scheduling_strategy")
    if strategy is not None and getattr(strategy, "_scheduling_kind", None) == "PLACEMENT_GROUP":
        group, index = strategy.placement_group, strategy.placement_group_bundle_index
    elif opts.get("placement_group") not in (None, "default"):
        group = opts["placement_group"]
        index = opts.get("placement_group_bundle_index")
        index = -1 if index is None else index
    else:
        return resources
    from .util.placement_group import rewrite_resources

    return rewrite_resources(resources, group, index)


def strategy_wire(strategy) -> list | None:
    if strategy is None or strategy == "DEFAULT":
        return None
    if strategy == "SPREAD":
        return ["SPREAD"]
    return strategy._wire()


def submit_call(client, function_id: bytes, prepared: dict, args: tuple, kwargs: dict, actor_id: bytes | None = None):
    """Queue one task (or actor method call); returns its ref, refs, or None for no returns."""
    spec, refs, packed_args = build_task(client, function_id, prepared, args, kwargs, actor_id=actor_id)
    client.submit(spec, [r.binary() for r in refs])
    if session.hooks.submit_listeners:
        _notify_submitted(spec.task_id)
    del packed_args  # dropped only after the submit is queued, so the task holds it first
    if prepared["num_returns"] == 1:
        return refs[0]
    if prepared["num_returns"] == 0:
        return None
    return refs


def build_task(
    client,
    function_id: bytes,
    prepared: dict,
    args: tuple,
    kwargs: dict,
    actor_id: bytes | None = None,
    actor_creation: dict | None = None,
):
    """Make the spec and the return refs of one task call (or actor call / constructor).

    Returns (spec, return refs, ref to the packed arguments if they were put in the store);
    the caller keeps the last alive until the spec is queued.
    """
    task_id = session.next_task_id()
    check_current_refs(a for a in (*args, *kwargs.values()) if type(a) is ObjectRef)  # a stale one would hang
    args, kwargs, arg_refs = lift_refs(args, kwargs, ObjectRef)
    args_bytes = None
    args_in_store = False
    contained: list = []
    keep_alive = None
    if args or kwargs:
        serialized = serialization.serialize_arguments(args, kwargs)
        contained = serialized.contained
        if serialized.total_bytes > INLINE_OBJECT_MAX_BYTES:
            keep_alive = put_serialized(client, serialized, f"The arguments of a call of {prepared['function_name']}")
            arg_refs.append(keep_alive.binary())
            args_in_store = True
        else:
            args_bytes = serialized.to_bytes()
    spec = TaskSpec(
        task_id,
        client.client_id,
        _parent_task_id(),
        function_id,
        prepared["function_name"],
        args_bytes,
        arg_refs,
        args_in_store,
        prepared["num_returns"],
        prepared["resources"],
        prepared["max_retries"],
        prepared["retry_exceptions"],
        prepared["retry_types"],
        prepared["name"],
        prepared["env_vars"],
        prepared["strategy"],
        contained,
        actor_id=actor_id,
        actor_creation=actor_creation,
        namespace=session.current_namespace(),
        job_id=task_context.current_job_id(),
    )
    refs = [ObjectRef(task_id + (i + 1).to_bytes(4, "big")) for i in range(prepared["num_returns"])]
    return spec, refs, keep_alive


def _notify_submitted(task_id: bytes) -> None:
    task_hex = task_id.hex()
    for listener in list(session.hooks.submit_listeners):
        listener(task_hex)


def _parent_task_id() -> bytes | None:
    spec = task_context.current_spec()
    return spec.task_id if spec is not None else None
