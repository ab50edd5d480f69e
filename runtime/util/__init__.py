"""Utilities on top of the public API: ActorPool and a distributed Queue."""

from __future__ import annotations

from .actor_pool import ActorPool

__all__ = ["ActorPool", "queue"]


def __getattr__(name: str):
    if name == "queue":
        from . import queue

        return queue
    raise AttributeError(f"module 'shoal.util' has no attribute {name!r}")
