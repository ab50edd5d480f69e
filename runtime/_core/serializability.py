"""Find the piece of a value that cannot be pickled, for error messages (the failure path only).

Walks containers (tuple, list, dict, set), an object's attributes and a function's closure
and globals, test-pickling each member, and descends into the first member that fails,
until it reaches one whose own members all pickle. Bounded in depth and in the members it
tries, so a huge or cyclic value costs little; buffers are not copied while testing.
"""

from __future__ import annotations

from typing import Any

import cloudpickle

MAX_DEPTH = 8
MAX_MEMBERS = 200  # members test-pickled in all, across every level


def describe_unpicklable(value: Any) -> str | None:
    """Where pickling `value` fails, e.g. "element 1 (a _thread.lock)"; None if not narrowed.

    None when `value` itself is the smallest failing piece (no member of it fails alone),
    or when the search ran out of its budget before it found one.
    """
    found = find_unpicklable(value)
    return None if found is None else describe(*found)


def describe(steps: list[str], culprit: Any) -> str:
    return f"{' -> '.join(steps)} ({_a_type(culprit)})"


def find_unpicklable(value: Any) -> tuple[list[str], Any] | None:
    """(steps from `value` to the innermost member that fails to pickle, that member), or None."""
    budget = [MAX_MEMBERS]
    steps: list[str] = []
    culprit = value
    seen = {id(value)}
    for _ in range(MAX_DEPTH):
        found = _failing_member(culprit, budget, seen)
        if found is None:
            break
        step, culprit = found
        steps.append(step)
        seen.add(id(culprit))
    return (steps, culprit) if steps else None


def type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def _a_type(value: Any) -> str:
    return f"a {type_name(value)}"


def _pickles(value: Any) -> bool:
    try:
        # Out-of-band buffers are left out (the callback returns None): arrays are not copied.
        cloudpickle.dumps(value, protocol=5, buffer_callback=lambda buffer: None)
    except Exception:  # noqa: BLE001 - any failure means "cannot be pickled"
        return False
    return True


def _failing_member(value: Any, budget: list, seen: set) -> tuple[str, Any] | None:
    """The first member of `value` that fails to pickle on its own, as (step, member)."""
    for step, member in _members(value):
        if budget[0] <= 0:
            return None
        if id(member) in seen or isinstance(member, (int, float, str, bytes, bool, type(None))):
            continue
        budget[0] -= 1
        if not _pickles(member):
            return step, member
    return None


def _members(value: Any):
    """(step, member) pairs of the members pickling `value` pickles too."""
    import inspect  # only on this failure path: `import shoal` stays light

    if isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            yield f"element {index}", item
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"key {_short_repr(key)}", item
            yield f"the key {_short_repr(key)} itself", key
    elif isinstance(value, (set, frozenset)):
        for item in value:
            yield f"a member of the {type(value).__name__}", item
    elif inspect.isfunction(value):
        try:
            variables = inspect.getclosurevars(value)
        except (TypeError, ValueError):
            return
        for name, item in variables.nonlocals.items():
            yield f"captured variable {name!r}", item
        for name, item in variables.globals.items():
            yield f"global {name!r}", item
    elif inspect.ismethod(value):
        yield "the method's instance", value.__self__
    elif isinstance(value, type):
        for name, item in vars(value).items():
            if not (name.startswith("__") and name.endswith("__")):
                yield f"class attribute {name!r}", item
    else:
        attributes = getattr(value, "__dict__", None)
        if isinstance(attributes, dict):
            for name, item in attributes.items():
                yield f"attribute {name!r}", item
        for name in _slot_names(type(value)):
            if hasattr(value, name):
                yield f"attribute {name!r}", getattr(value, name)


def _slot_names(kind: type) -> list[str]:
    names = []
    for klass in kind.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else [s for s in slots if s not in ("__dict__", "__weakref__")]
    return names


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
