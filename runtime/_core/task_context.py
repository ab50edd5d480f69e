"""What the current thread is running: the task, its resources, its resolved arguments.

Set by the worker's executor around each task; read by the public API (get_runtime_context,
get_gpu_ids, and get() on a value that arrived as a resolved top-level ref argument).
"""

from __future__ import annotations

import threading

_local = threading.local()


class ProcessInfo:
    mode = "driver"  # or "worker"
    worker_id: bytes | None = None
    node_id: bytes | None = None
    job_id: str | None = None
    namespace: str | None = None
    actor_id: bytes | None = None
    executor = None


process = ProcessInfo()


def set_current(spec, gpu_ids: list, resolved_ids: set) -> None:
    _local.spec = spec
    _local.gpu_ids = gpu_ids
    _local.resolved_ids = resolved_ids


def clear_current() -> None:
    _local.spec = None
    _local.gpu_ids = []
    _local.resolved_ids = set()


def current_spec():
    return getattr(_local, "spec", None)


def current_gpu_ids() -> list:
    return getattr(_local, "gpu_ids", [])


def arrived_as_argument(value) -> bool:
    return id(value) in getattr(_local, "resolved_ids", ())
