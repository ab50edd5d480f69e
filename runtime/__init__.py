"""shoal: a notebook-first distributed compute runtime with Ray's API.

    import shoal as ray

    @ray.remote
    def square(x):
        return x * x

    print(ray.get([square.remote(i) for i in range(4)]))

Public names load on first use (PEP 562), so shoal's own cluster processes, which import only
`shoal._core`, start without the API layer.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Actor": "actor",
    "ActorID": "_core.ids",
    "JobID": "_core.ids",
    "NodeID": "_core.ids",
    "ObjectID": "_core.ids",
    "PlacementGroupID": "_core.ids",
    "TaskID": "_core.ids",
    "WorkerID": "_core.ids",
    "ObjectRef": "object_ref",
    "get_actor": "actor",
    "kill": "actor",
    "method": "actor",
    "available_resources": "api",
    "cancel": "api",
    "cluster_resources": "api",
    "get": "api",
    "get_gpu_ids": "api",
    "get_runtime_context": "runtime_context",
    "init": "api",
    "is_initialized": "api",
    "nodes": "api",
    "put": "api",
    "remote": "api",
    "shutdown": "api",
    "wait": "api",
}
_SUBMODULES = {"exceptions", "util", "actor", "runtime_context"}

__all__ = sorted([*_EXPORTS, "__version__", "actor", "exceptions", "util"])


def __getattr__(name: str) -> Any:  # a lazily imported name: any of the public API
    module_name = _EXPORTS.get(name)
    if module_name is not None:
        value = getattr(importlib.import_module(f".{module_name}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'shoal' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def load_ipython_extension(ipython) -> None:
    """`%load_ext shoal`: register shoal's magics in `ipython`; starts no cluster."""
    # Absolute: shoal.kernel_ext is installed from kernel_ext/, not runtime/ (tools reading the
    # source tree resolve it only by name).
    from shoal.kernel_ext import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    """`%unload_ext shoal`: remove shoal's magics and stop their background threads."""
    from shoal.kernel_ext import unload_ipython_extension as unload

    unload(ipython)
