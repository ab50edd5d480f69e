"""Typed garbage for the wire: every record kind with one field (or one element) of a wrong type.

`variants()` starts from one valid sample of every registered kind and yields encoded frames in
which exactly one field, at any depth of nesting, holds a value of a type its schema rejects
(values the schema accepts are skipped: they would be valid messages, with effects). Used by
the unit test of the schema and by the fuzz test against real node managers.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import msgpack
from shoal._core import message_schema, protocol
from shoal._core.message_schema import DictOf, ListOf, Nullable, Record

from tests.unit.test_protocol import SAMPLES

WRONG_VALUES = (None, True, -7, 2**63, 2.5, float("nan"), "text", b"\x00" * 20, [1, "x"], {"k": 1}, {1: b"v"})

_NODE_ROW = {
    "node_id": b"\x0d" * 16,
    "endpoint": "tcp://127.0.0.1:7000",
    "node_ip": "127.0.0.1",
    "total": {"CPU": 1000},
    "available": {"CPU": 1000},
    "alive": True,
    "is_head": False,
    "object_store_bytes": 1 << 20,
    "object_store_used_bytes": 0,
    "num_workers": 1,
    "started_at": 1.5e9,
    "data_endpoint": "tcp://127.0.0.1:7001",
}


def base_samples() -> list:
    """One valid sample of every registered kind (the codec tests' samples, schema-valid)."""
    by_kind: dict = {}
    for sample in SAMPLES:
        if type(sample) is protocol.NodeTable:
            sample = protocol.NodeTable([dict(_NODE_ROW)])
        if message_schema.problem(sample) is None:
            by_kind.setdefault(type(sample), sample)
    missing = [cls.__name__ for cls in protocol.registered_kinds().values() if cls not in by_kind]
    if missing:
        raise AssertionError(f"no schema-valid sample for {missing}")
    return list(by_kind.values())


def _wire(message) -> list:
    return protocol._to_wire(message)


def _element_variants(spec) -> Iterator[tuple[str, object]]:
    """Containers holding one wrong element."""
    if isinstance(spec, Nullable):
        spec = spec.inner
    if isinstance(spec, ListOf) and not isinstance(spec.item, Record):
        for wrong in WRONG_VALUES:
            if spec.item.why(wrong) is not None:
                yield f"[{wrong!r}]", [wrong]
    elif isinstance(spec, DictOf):
        for wrong in WRONG_VALUES:
            if spec.value.why(wrong) is not None:
                key = next(k for k in ("k", b"k", 1) if spec.key.why(k) is None)
                yield f"{{{key!r}: {wrong!r}}}", {key: wrong}
            if spec.key.why(wrong) is not None and not isinstance(wrong, (list, dict)):
                yield f"{{{wrong!r}: ...}}", {wrong: 0}


def _variants_of(cls: type, wire: list, label: str) -> Iterator[tuple[str, list, list]]:
    """(label, wire path, replacement) for every field of a record and of the records it nests."""
    specs = message_schema.field_specs(cls)
    nested = {cls.FIELDS[index]: (target, many) for index, target, many in cls.NESTED}
    for index, name in enumerate(cls.FIELDS):
        spec = specs[name]
        for wrong in WRONG_VALUES:
            if spec.why(wrong) is not None:
                yield f"{label}.{name}={wrong!r}", [index + 1], wrong
        for text, wrong in _element_variants(spec):
            yield f"{label}.{name}={text}", [index + 1], wrong
        value = wire[index + 1]
        if name in nested and value:
            target, many = nested[name]
            inner, path = (value[0], [index + 1, 0]) if many else (value, [index + 1])
            for text, inner_path, wrong in _variants_of(target, inner, f"{label}.{name}"):
                yield text, path + inner_path, wrong


def variants(samples: list | None = None) -> Iterator[tuple[str, bytes]]:
    """(what was changed, the encoded frame) for every sample, field and wrong value."""
    for sample in samples if samples is not None else base_samples():
        wire = _wire(sample)
        for label, path, wrong in _variants_of(type(sample), wire, type(sample).__name__):
            mutated = copy.deepcopy(wire)
            holder = mutated
            for step in path[:-1]:
                holder = holder[step]
            holder[path[-1]] = wrong
            yield label, msgpack.packb(mutated, use_bin_type=True)
