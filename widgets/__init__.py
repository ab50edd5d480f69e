"""shoal's notebook widgets (ipywidgets 8): cluster view, task view, progress bars.

Names load lazily, so `import shoal.widgets` stays cheap and ipywidgets is imported only when a
widget is first used. All data comes from the public state API; one refresher thread per kernel
keeps live widgets updated (none when `SHOAL_NONINTERACTIVE=1`).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ClusterView": "cluster_view",
    "TaskView": "task_view",
    "ProgressBar": "progress",
    "track": "progress",
    "stop_refresher": "refresher",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'shoal.widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
