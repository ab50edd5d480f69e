"""Serialize values for the object store: pickle protocol 5 with out-of-band buffers.

Layout of a serialized object (inline bytes or a region of the shared arena)::

    +--------+---------+------------+---------------------------+--------+-----+-------+
    | "SHL1" | n (u32) | inband u64 | n x (offset u64, len u64) | inband | pad | buf 0 | ...
    +--------+---------+------------+---------------------------+--------+-----+-------+

Buffers start on 64-byte boundaries so numpy arrays read back aligned and zero-copy. Reading
from a read-only view yields read-only arrays. ObjectRefs met while pickling are recorded as
the value's `contained` refs so the node manager keeps them alive as long as the value.
"""

from __future__ import annotations

import hashlib
import io
import marshal
import os
import pickle
import struct
import sys
import sysconfig
import threading
import types
from typing import Any

import cloudpickle

from . import serializability

MAGIC = b"SHL1"
_HEADER = struct.Struct("<4sIQ")
_ENTRY = struct.Struct("<QQ")
ALIGN = 64

_state = threading.local()


class _Pickler(cloudpickle.Pickler):
    """cloudpickle, except that code objects travel whole, as marshal writes them.

    cloudpickle rebuilds code from its fields and (from 3.1.3) names the file "<dynamic-code>",
    so remote tracebacks would lose where the user's code is. marshal keeps every field,
    `co_filename` and line tables included, whatever the cloudpickle version; driver and worker
    run the same interpreter, which marshal's format needs (cloudpickle's own is as specific).
    """

    def reducer_override(self, obj):
        if type(obj) is types.CodeType:
            return marshal.loads, (marshal.dumps(obj),)
        return super().reducer_override(obj)


def _dumps(value: Any, buffer_callback=None) -> bytes:
    out = io.BytesIO()
    _Pickler(out, protocol=5, buffer_callback=buffer_callback).dump(value)
    return out.getvalue()


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


class SerializedObject:
    """A pickled value: in-band bytes plus out-of-band buffers, not yet laid out."""

    __slots__ = ("inband", "buffers", "contained", "total_bytes", "_offsets")

    def __init__(self, inband: bytes, buffers: list, contained: list):
        self.inband = inband
        self.buffers = [b.raw() if isinstance(b, pickle.PickleBuffer) else memoryview(b).cast("B") for b in buffers]
        self.contained = contained
        header = _HEADER.size + _ENTRY.size * len(self.buffers)
        position = header + len(inband)
        offsets = []
        for buf in self.buffers:
            position = _aligned(position)
            offsets.append(position)
            position += buf.nbytes
        self._offsets = offsets
        self.total_bytes = position

    def write_into(self, view: memoryview) -> None:
        """Lay the object out into `view` (at least `total_bytes` long)."""
        struct.pack_into("<4sIQ", view, 0, MAGIC, len(self.buffers), len(self.inband))
        position = _HEADER.size
        for offset, buf in zip(self._offsets, self.buffers):
            _ENTRY.pack_into(view, position, offset, buf.nbytes)
            position += _ENTRY.size
        view[position : position + len(self.inband)] = self.inband
        for offset, buf in zip(self._offsets, self.buffers):
            view[offset : offset + buf.nbytes] = buf

    def to_bytes(self) -> bytes:
        if not self.buffers:
            # Common small case: no padding, one copy.
            return _HEADER.pack(MAGIC, 0, len(self.inband)) + self.inband
        out = bytearray(self.total_bytes)
        self.write_into(memoryview(out))
        return bytes(out)


def _reducer_hook_begin() -> list:
    contained: list = []
    stack = getattr(_state, "contained_stack", None)
    if stack is None:
        stack = _state.contained_stack = []
    stack.append(contained)
    return contained


def _reducer_hook_end() -> None:
    _state.contained_stack.pop()


def note_contained_ref(object_id: bytes) -> None:
    """Called by ObjectRef.__reduce__ while a value is being serialized."""
    stack = getattr(_state, "contained_stack", None)
    if stack:
        stack[-1].append(object_id)


_SIMPLE_TYPES = (int, float, str, bytes, bool, type(None))


def serialize(value: Any) -> SerializedObject:
    """Pickle `value` with protocol 5, collecting large buffers out of band.

    Raises:
        TypeError: the value (or something inside it) cannot be pickled; the message names
            the offending type.
    """
    return _serialize(value, arguments=False)


def serialize_arguments(args: tuple, kwargs: dict) -> SerializedObject:
    """`serialize((args, kwargs))` for a call; a failure names the argument that failed.

    Raises:
        TypeError: an argument cannot be pickled, e.g. "args[1] (a _thread.lock) cannot be pickled".
    """
    return _serialize((args, kwargs), arguments=True)


def _serialize(value: Any, arguments: bool) -> SerializedObject:
    buffers: list = []
    contained = _reducer_hook_begin()
    try:
        if type(value) in _SIMPLE_TYPES:
            inband = pickle.dumps(value, protocol=5)
        else:
            inband = _dumps(value, buffer_callback=buffers.append)
    except Exception as exc:
        raise TypeError(_unpicklable_message(value, exc, arguments)) from exc
    finally:
        _reducer_hook_end()
    return SerializedObject(inband, buffers, contained)


def _unpicklable_message(value: Any, exc: Exception, arguments: bool = False) -> str:
    reason = f"{type(exc).__name__}: {exc}"
    found = serializability.find_unpicklable(value)
    subject = f"a value of type {serializability.type_name(value)}"
    if found is not None:
        steps, culprit = found
        if arguments:
            subject = "the arguments of the call"
            steps = _argument_steps(steps)
        reason = f"{serializability.describe(steps, culprit)} cannot be pickled ({reason})"
    return (
        f"Could not serialize {subject}: {reason}. Values passed to or returned from remote functions must "
        "be picklable (locks, sockets, open files and generators are not)."
    )


def _argument_steps(steps: list[str]) -> list[str]:
    """Steps into the (args, kwargs) pair, said as the call's own: args[1], kwargs['c']."""
    if len(steps) < 2:
        return steps
    if steps[0] == "element 0" and steps[1].startswith("element "):
        return [f"args[{steps[1][8:]}]"] + steps[2:]
    if steps[0] == "element 1" and steps[1].startswith("key "):
        return [f"kwargs[{steps[1][4:]}]"] + steps[2:]
    return steps


def deserialize(view: memoryview) -> Any:
    """Rebuild a value from a serialized layout. Buffers alias `view` (zero-copy)."""
    magic, count, inband_len = _HEADER.unpack_from(view, 0)
    if magic != MAGIC:
        raise ValueError("corrupt shoal object: bad magic")
    position = _HEADER.size
    buffers = []
    for _ in range(count):
        offset, length = _ENTRY.unpack_from(view, position)
        position += _ENTRY.size
        buffers.append(view[offset : offset + length])
    inband = view[position : position + inband_len]
    return pickle.loads(inband, buffers=buffers)


def deserialize_bytes(data: bytes) -> Any:
    return deserialize(memoryview(data))


# ---------------------------------------------------------------------------------------------
# Functions and classes


def _library_roots() -> tuple[str, ...]:
    roots = {sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # shoal itself
    return tuple(os.path.abspath(r) + os.sep for r in roots if r)


_LIBRARY_ROOTS: tuple[str, ...] | None = None
_BY_VALUE_MODULES: set[str] = set()


def ship_module_by_value(module_name: str | None) -> None:
    """Pickle user code (anything outside installed libraries) by value.

    Workers do not share the driver's working directory or sys.path, so a function from the
    user's script, a test module or a notebook is sent whole rather than as an import path.
    """
    global _LIBRARY_ROOTS
    if not module_name or module_name == "__main__" or module_name in _BY_VALUE_MODULES:
        return
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if module is None or path is None:
        return
    if _LIBRARY_ROOTS is None:
        _LIBRARY_ROOTS = _library_roots()
    if os.path.abspath(path).startswith(_LIBRARY_ROOTS):
        return
    cloudpickle.register_pickle_by_value(module)
    _BY_VALUE_MODULES.add(module_name)


def pickle_definition(obj: Any) -> tuple[bytes, bytes]:
    """Pickle a function or class once; returns (content-hash id, payload)."""
    ship_module_by_value(getattr(obj, "__module__", None))
    try:
        payload = _dumps(obj)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        culprit = serializability.describe_unpicklable(obj)
        if culprit is not None:
            reason = f"{culprit} cannot be pickled ({reason})"
        raise TypeError(
            f"Could not serialize remote definition {getattr(obj, '__qualname__', obj)!r}: {reason}. It "
            "probably captures an unpicklable global (a lock, socket, open file or client); create it inside "
            "the function instead."
        ) from exc
    return hashlib.blake2b(payload, digest_size=16).digest(), payload


def load_definition(payload: bytes) -> Any:
    return cloudpickle.loads(payload)


def dumps_plain(value: Any) -> bytes:
    """Small internal payloads (exception tuples) pickled without buffers."""
    return _dumps(value)


def loads_plain(data: bytes) -> Any:
    return pickle.loads(data)


__all__ = [
    "SerializedObject",
    "serialize",
    "serialize_arguments",
    "deserialize",
    "deserialize_bytes",
    "note_contained_ref",
    "pickle_definition",
    "load_definition",
    "ship_module_by_value",
    "dumps_plain",
    "loads_plain",
]
