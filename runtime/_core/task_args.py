"""How a task's arguments travel: one pickle of (args, kwargs) with top-level refs lifted out.

Top-level ObjectRef arguments become placeholders and are listed separately, so the node
manager can wait for them and hand the worker their values; refs nested deeper stay refs
(recorded as the payload's contained refs so they stay alive while the task does).
"""

from __future__ import annotations

from typing import Any


class ArgPlaceholder:
    """Stands in for the `index`-th top-level ObjectRef argument."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index

    def __reduce__(self):
        return (ArgPlaceholder, (self.index,))


def lift_refs(args: tuple, kwargs: dict, ref_type: type) -> tuple[tuple, dict, list]:
    """Replace top-level refs with placeholders; returns (args, kwargs, ref ids in order)."""
    refs: list = []
    if not any(type(a) is ref_type for a in args) and not any(type(v) is ref_type for v in kwargs.values()):
        return args, kwargs, refs

    def lift(value):
        if type(value) is ref_type:
            refs.append(value.binary())
            return ArgPlaceholder(len(refs) - 1)
        return value

    return tuple(lift(a) for a in args), {k: lift(v) for k, v in kwargs.items()}, refs


def fill_refs(args: tuple, kwargs: dict, values: list) -> tuple[tuple, dict]:
    """Put resolved values back where their placeholders stand."""
    if not values:
        return args, kwargs

    def fill(value: Any):
        if type(value) is ArgPlaceholder:
            return values[value.index]
        return value

    return tuple(fill(a) for a in args), {k: fill(v) for k, v in kwargs.items()}
