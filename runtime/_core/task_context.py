"""What the current thread or coroutine is running: the task, its GPUs, its resolved arguments.

Set by the worker's executor around each task; read by the public API (get_runtime_context,
get_gpu_ids, get() on a value that arrived as a resolved top-level ref argument, and task
submission, which passes the current job on to nested tasks). A
context variable, so threaded and async actors keep one value per running call.
"""

from __future__ import annotations

import contextvars
from typing import Any

_current: contextvars.ContextVar = contextvars.ContextVar("shoal_task", default=(None, (), frozenset()))


class ProcessInfo:
    mode = "driver"  # or "worker"
    worker_id: bytes | None = None
    node_id: bytes | None = None
    job_id: str | None = None  # hex; a driver's own job, or the job that created this worker's actor
    namespace: str | None = None
    actor_id: bytes | None = None
    actor_name: str | None = None
    actor_restarted = False
    actor_handle = None
    actor_resources: dict | None = None  # what this worker's actor holds for its life
    executor: Any = None  # the worker's Executor (None in a driver)


process = ProcessInfo()


def set_current(spec, gpu_ids: list, resolved_ids: set) -> None:
    _current.set((spec, tuple(gpu_ids), frozenset(resolved_ids)))


def clear_current() -> None:
    _current.set((None, (), frozenset()))


def current_spec():
    return _current.get()[0]


def current_job_id() -> bytes | None:
    """The job whose work runs here: the current task's, else this process's own."""
    spec = current_spec()
    if spec is not None and spec.job_id is not None:
        return spec.job_id
    return bytes.fromhex(process.job_id) if process.job_id else None


def current_gpu_ids() -> list:
    return list(_current.get()[1])


def arrived_as_argument(value) -> bool:
    return id(value) in _current.get()[2]
