"""Utilities on top of the public API: ActorPool and a distributed Queue."""

from __future__ import annotations

from .actor_pool import ActorPool

__all__ = ["ActorPool", "queue", "scheduling_strategies", "state"]


def __getattr__(name: str):
    if name in ("queue", "scheduling_strategies", "state"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'shoal.util' has no attribute {name!r}")
