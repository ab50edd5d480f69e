"""Utilities on top of the public API: ActorPool and a distributed Queue."""

from __future__ import annotations

from .actor_pool import ActorPool
from .placement_group import (
    PlacementGroup,
    get_current_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)

__all__ = [
    "ActorPool",
    "PlacementGroup",
    "get_current_placement_group",
    "output",
    "placement_group",
    "placement_group_table",
    "queue",
    "remove_placement_group",
    "scheduling_strategies",
    "state",
]


def __getattr__(name: str):
    if name in ("output", "queue", "scheduling_strategies", "state"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'shoal.util' has no attribute {name!r}")
