"""The type of every field of every wire record, and the check a node manager runs before any handler.

`protocol.decode` guarantees a record's shape (its kind, its field count, the kinds of nested
records); this module guarantees each field's type, so no handler meets an int where it
slices bytes or a str where it adds numbers. The schema is derived from the records' own
annotations (`bytes | None`, `int`, `list`, ...); `_ELEMENTS` adds what annotations leave out:
what lists and dicts hold, ranges of sizes and offsets, and exact sizes on the data port,
where requests arrive before anyone is authenticated.

Pure: no sockets, no clock. `checked(frame)` (or `problem(record)`) is all a service needs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from . import protocol
from .ids import OBJECT_ID_BYTES


class Spec:
    """What a field may hold. `why(value)` is None when the value fits, else what is wrong."""

    def why(self, value: Any) -> str | None:
        raise NotImplementedError

    def accepts(self, value: Any) -> bool:
        return self.why(value) is None


def _type_name(value: Any) -> str:
    return type(value).__name__


class Types(Spec):
    """Exactly one of these types (`int` does not admit `bool`; msgpack keeps them apart)."""

    def __init__(self, *types: type, text: str | None = None):
        self.types = frozenset(types)
        self.text = text or " or ".join(sorted("None" if t is type(None) else t.__name__ for t in types))

    def why(self, value):
        return None if type(value) in self.types else f"{self.text} expected, got {_type_name(value)}"

    def __str__(self) -> str:
        return self.text


class Sized(Spec):
    """bytes or str with a length in [low, high]."""

    def __init__(self, kind: type, low: int, high: int):
        self.kind, self.low, self.high = kind, low, high

    def why(self, value):
        if type(value) is not self.kind:
            return f"{self} expected, got {_type_name(value)}"
        if not self.low <= len(value) <= self.high:
            return f"{self} expected, got {len(value)} long"
        return None

    def __str__(self) -> str:
        size = str(self.low) if self.low == self.high else f"{self.low}..{self.high}"
        return f"{self.kind.__name__} of length {size}"


class IntRange(Spec):
    def __init__(self, low: int, high: int = 2**64):
        self.low, self.high = low, high

    def why(self, value):
        if type(value) is not int:
            return f"{self} expected, got {_type_name(value)}"
        return None if self.low <= value <= self.high else f"{self} expected, got {value}"

    def __str__(self) -> str:
        return f"int in [{self.low}, {self.high}]"


class Amount(Spec):
    """A resource amount: a finite, non-negative number."""

    def why(self, value):
        if type(value) not in (int, float):
            return f"{self} expected, got {_type_name(value)}"
        return None if math.isfinite(value) and value >= 0 else f"{self} expected, got {value}"

    def __str__(self) -> str:
        return "a finite number >= 0"


class Nullable(Spec):
    def __new__(cls, inner: Spec):
        if type(inner) is Types:  # stays on the fast path: one set lookup
            return Types(*inner.types, type(None), text=f"{inner.text} or None")
        return super().__new__(cls)

    def __init__(self, inner: Spec):
        self.inner = inner

    def why(self, value):
        return None if value is None else self.inner.why(value)

    def __str__(self) -> str:
        return f"{self.inner} or None"


class ListOf(Spec):
    def __init__(self, item: Spec):
        self.item = item

    def why(self, value):
        if type(value) is not list:
            return f"{self} expected, got {_type_name(value)}"
        item = self.item
        if item is ANY:
            return None
        if type(item) is Types:
            types = item.types
            for index, element in enumerate(value):
                if type(element) not in types:
                    return f"[{index}]: {item} expected, got {_type_name(element)}"
            return None
        for index, element in enumerate(value):
            problem = item.why(element)
            if problem is not None:
                return f"[{index}]: {problem}"
        return None

    def __str__(self) -> str:
        return f"list of {self.item}"


class DictOf(Spec):
    def __init__(self, key: Spec, value: Spec):
        self.key, self.value = key, value

    def why(self, value):
        if type(value) is not dict:
            return f"{self} expected, got {_type_name(value)}"
        for key, element in value.items():
            problem = self.key.why(key)
            if problem is not None:
                return f"key {key!r:.40}: {problem}"
            problem = self.value.why(element)
            if problem is not None:
                return f"[{key!r:.40}]: {problem}"
        return None

    def __str__(self) -> str:
        return f"dict of {self.key} to {self.value}"


class Keys(Spec):
    """A dict with these keys (the `required` ones present); other keys are left alone."""

    def __init__(self, fields: dict[str, Spec], optional: tuple[str, ...] = ()):
        self.fields = fields
        self.required = tuple(name for name in fields if name not in optional)

    def why(self, value):
        if type(value) is not dict:
            return f"{self} expected, got {_type_name(value)}"
        for name in self.required:
            if name not in value:
                return f"key {name!r} missing"
        for name, spec in self.fields.items():
            if name in value:
                problem = spec.why(value[name])
                if problem is not None:
                    return f"[{name!r}]: {problem}"
        return None

    def __str__(self) -> str:
        return f"dict with keys {', '.join(self.fields)}"


class Record(Spec):
    """A nested record (decode has checked its kind); its fields are checked in turn."""

    def __init__(self, cls: type):
        self.cls = cls

    def why(self, value):
        if type(value) is not self.cls:
            return f"{self.cls.__name__} expected, got {_type_name(value)}"
        return problem(value)

    def __str__(self) -> str:
        return self.cls.__name__


class Predicate(Spec):
    def __init__(self, test: Callable[[Any], bool], text: str):
        self.test, self.text = test, text

    def why(self, value):
        return None if self.test(value) else f"{self.text} expected, got {value!r:.60}"

    def __str__(self) -> str:
        return self.text


class _Any(Spec):
    def why(self, value):
        return None

    def __str__(self) -> str:
        return "anything"


ANY = _Any()
BYTES = Types(bytes)
STR = Types(str)
INT = Types(int)
BOOL = Types(bool)
FLOAT = Types(float, int, text="float")
UINT = IntRange(0)
IDS = ListOf(BYTES)
RESOURCES = DictOf(STR, Amount())
MILLI_RESOURCES = DictOf(STR, INT)  # as nodes keep them (milli-units; a heartbeat's available may dip below 0)
DATA_PORT_MAX_CHUNK_BYTES = 64 * 1024 * 1024  # a pull asks for at most this much per request


def _strategy_ok(value) -> bool:
    """["SPREAD"] or ["NODE_AFFINITY", node id in hex, soft]."""
    if type(value) is not list or not value:
        return False
    if value == ["SPREAD"]:
        return True
    if len(value) != 3 or value[0] != "NODE_AFFINITY" or type(value[1]) is not str or type(value[2]) is not bool:
        return False
    try:
        bytes.fromhex(value[1])
    except ValueError:
        return False
    return True


_NODE_ROW = Keys(
    {
        "node_id": BYTES,
        "endpoint": STR,
        "node_ip": STR,
        "total": MILLI_RESOURCES,
        "available": MILLI_RESOURCES,
        "alive": BOOL,
        "is_head": BOOL,
        "object_store_bytes": UINT,
        "object_store_used_bytes": UINT,
        "num_workers": UINT,
        "started_at": FLOAT,
        "data_endpoint": STR,
    },
    optional=("data_endpoint",),
)

# What annotations cannot say: element types, ranges, exact sizes. Keyed by record, then field.
_ELEMENTS: dict[type, dict[str, Spec]] = {
    protocol.ObjectValue: {"shm_offset": IntRange(-1), "shm_size": UINT, "contained": Nullable(IDS)},
    protocol.TaskSpec: {
        "arg_refs": IDS,
        "num_returns": UINT,
        "resources": RESOURCES,
        "env_vars": Nullable(DictOf(STR, STR)),
        "strategy": Nullable(Predicate(_strategy_ok, "['SPREAD'] or ['NODE_AFFINITY', node id hex, soft]")),
        "contained": Nullable(IDS),
        "attempt": UINT,
        "actor_creation": Nullable(DictOf(STR, ANY)),
    },
    protocol.TaskExec: {"gpu_ids": ListOf(INT)},
    protocol.TaskResult: {"duration_s": FLOAT},
    protocol.AllocateObject: {"size_bytes": UINT},
    protocol.GetObjects: {"object_ids": IDS},
    protocol.UpdateReferences: {"deltas": DictOf(BYTES, INT), "released_pins": IDS, "aborted_offsets": ListOf(UINT)},
    protocol.WorkerBlocked: {"returned_task_ids": IDS},
    protocol.ActorSpec: {"placement": RESOURCES, "lifetime": RESOURCES},
    protocol.CreatePlacementGroup: {"bundles": ListOf(RESOURCES)},
    protocol.ExecuteTasks: {"functions": DictOf(BYTES, BYTES)},
    protocol.RevokePins: {"object_ids": IDS},
    protocol.StateReply: {"rows": ListOf(DictOf(STR, ANY))},
    protocol.RegisterNode: {"resources": RESOURCES, "object_store_bytes": UINT},
    protocol.NodeHeartbeat: {
        "total": MILLI_RESOURCES,
        "available": MILLI_RESOURCES,
        "object_store_used_bytes": UINT,
        "num_workers": UINT,
        "counts": Nullable(DictOf(STR, DictOf(STR, INT))),
    },
    protocol.NodeTable: {"nodes": ListOf(_NODE_ROW)},
    protocol.ForwardTasks: {"functions": DictOf(BYTES, BYTES)},
    protocol.WatchObjects: {"object_ids": IDS},
    protocol.ObjectLocations: {"locations": IDS},
    protocol.PullChunk: {
        "object_id": Sized(bytes, OBJECT_ID_BYTES, OBJECT_ID_BYTES),
        "offset": IntRange(0, 2**62),
        "length": IntRange(0, DATA_PORT_MAX_CHUNK_BYTES),
        "mac": Sized(bytes, 32, 32),
    },
    protocol.ObjectChunk: {"offset": IntRange(0, 2**62), "total": IntRange(0, 2**62)},
    protocol.UpdateBorrows: {"deltas": DictOf(BYTES, INT)},
    protocol.ReleaseObjects: {"object_ids": IDS},
    protocol.LocateActors: {"actor_ids": IDS},
    protocol.ReserveBundles: {"indexes": ListOf(UINT), "bundles": ListOf(RESOURCES)},
    protocol.FramePieces: {"counts": ListOf(IntRange(1))},
}

_NAMED = {"bytes": bytes, "str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}


def _from_annotation(annotation: str, nested: type | None, many: bool) -> Spec:
    names = [part.strip() for part in annotation.split("|")]
    nullable = "None" in names
    names = [name for name in names if name != "None"]
    if len(names) != 1:
        raise TypeError(f"cannot derive a check from the annotation {annotation!r}")
    name = names[0]
    if nested is not None:
        spec: Spec = ListOf(Record(nested)) if many else Record(nested)
    elif name == "float":
        spec = FLOAT
    elif name == "list":
        spec = ListOf(ANY)
    elif name == "dict":
        spec = DictOf(ANY, ANY)
    elif name in _NAMED:
        spec = Types(_NAMED[name])
    else:
        raise TypeError(f"cannot derive a check from the annotation {annotation!r}")
    return Nullable(spec) if nullable else spec


def _field_specs(cls: type) -> dict[str, Spec]:
    nested = {cls.FIELDS[index]: (target, many) for index, target, many in cls.NESTED}
    overrides = _ELEMENTS.get(cls, {})
    unknown = set(overrides) - set(cls.FIELDS)
    if unknown:
        raise TypeError(f"{cls.__name__} has no fields {sorted(unknown)}")
    specs = {}
    for field in dataclasses.fields(cls):
        if field.name in overrides:
            spec = overrides[field.name]
        else:
            target, many = nested.get(field.name, (None, False))
            spec = _from_annotation(str(field.type), target, many)
        if field.default is None and not spec.accepts(None):
            spec = Nullable(spec)  # `contained: list = None`: None is what senders leave there
        specs[field.name] = spec
    return specs


_SPECS: dict[type, dict[str, Spec]] = {cls: _field_specs(cls) for cls in protocol.registered_kinds().values()}

# The hot path: fields checked by type alone are one set lookup each, no call.
_PLAN: dict[type, tuple[tuple, tuple]] = {
    cls: (
        tuple((index, spec.types) for index, spec in enumerate(specs.values()) if type(spec) is Types),
        tuple((index, spec) for index, spec in enumerate(specs.values()) if type(spec) is not Types),
    )
    for cls, specs in _SPECS.items()
}


def field_specs(cls: type) -> dict[str, Spec]:
    """Every field of a record class and what it may hold."""
    return dict(_SPECS[cls])


def checked(frame: bytes) -> tuple[Any, str | None, str | None]:
    """(record, None, None) if `frame` decodes and passes the schema, else (None, reason, problem)
    with reason "malformed" (not a record) or "invalid" (a field of the wrong type or size)."""
    try:
        message = protocol.decode(frame)
    except ValueError as exc:
        return None, "malformed", str(exc)
    why = problem(message)
    if why is not None:
        return None, "invalid", why
    return message, None, None


def problem(message: Any) -> str | None:
    """None if every field of `message` (a decoded record) has its schema's type, else what is wrong."""
    cls = type(message)
    plan = _PLAN.get(cls)
    if plan is None:
        return f"{cls.__name__} is not a shoal record"
    simple, other = plan
    values = cls.GETTER(message)
    for index, types in simple:
        if type(values[index]) not in types:
            return _explain(cls, index, values[index])
    for index, spec in other:
        why = spec.why(values[index])
        if why is not None:
            return f"{cls.__name__}.{cls.FIELDS[index]}: {why}"
    return None


def _explain(cls: type, index: int, value: Any) -> str:
    name = cls.FIELDS[index]
    return f"{cls.__name__}.{name}: {_SPECS[cls][name].why(value)}"
