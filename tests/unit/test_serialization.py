"""Unit tests for value serialization: layout, zero-copy reads, cloudpickle, clear errors."""

from __future__ import annotations

import json
import threading

import cloudpickle
import numpy as np
import pyarrow as pa
import pytest
from shoal._core import serialization
from shoal._core.serialization import (
    ALIGN,
    MAGIC,
    deserialize,
    deserialize_bytes,
    note_contained_ref,
    pickle_definition,
    serialize,
    ship_module_by_value,
)


def round_trip(value):
    return deserialize_bytes(serialize(value).to_bytes())


def aligned_readonly_view(serialized) -> memoryview:
    """Lay `serialized` out at a 64-byte aligned address and return a read-only view of it."""
    backing = np.zeros(serialized.total_bytes + ALIGN, dtype=np.uint8)
    start = (-backing.ctypes.data) % ALIGN
    region = memoryview(backing)[start : start + serialized.total_bytes]
    serialized.write_into(region)
    assert np.frombuffer(region, dtype=np.uint8).ctypes.data % ALIGN == 0
    return region.toreadonly()


def inside(array: np.ndarray, view: memoryview) -> bool:
    base = np.frombuffer(view, dtype=np.uint8)
    return np.shares_memory(array, base)


# -- plain values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        2**100,
        3.5,
        float("inf"),
        "",
        "h\u00e9llo \u4e16\u754c",
        b"\x00\xff",
        None,
        True,
        False,
        [],
        [1, [2, [3]]],
        (1, "a"),
        {"a": 1, 2: [b"x"], None: {"nested": (1.5,)}},
        {1, 2, 3},
        frozenset({"x"}),
    ],
    ids=repr,
)
def test_plain_values_round_trip(value):
    assert round_trip(value) == value


def test_small_values_have_no_out_of_band_buffers():
    serialized = serialize({"a": [1, 2, 3]})
    assert serialized.buffers == []
    data = serialized.to_bytes()
    assert data.startswith(MAGIC)
    assert len(data) == serialized.total_bytes


# -- numpy ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", ["float64", "float32", "int8", "int64", "uint16", "bool", "complex128", ">i4", "datetime64[ns]"]
)
def test_numpy_dtypes_round_trip(dtype):
    array = (np.arange(300) % 7).astype(dtype).reshape(3, 100)
    result = round_trip(array)
    assert result.dtype == array.dtype and result.shape == array.shape
    np.testing.assert_array_equal(result, array)


def test_structured_and_object_arrays_round_trip():
    structured = np.zeros(5, dtype=[("x", "f8"), ("name", "U4")])
    structured["name"] = ["a", "bb", "ccc", "d", "e"]
    np.testing.assert_array_equal(round_trip(structured), structured)
    objects = np.array([{"a": 1}, None, "s"], dtype=object)
    assert list(round_trip(objects)) == list(objects)


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.arange(100.0)[::3],
        lambda: np.arange(60).reshape(6, 10).T,
        lambda: np.arange(24).reshape(2, 3, 4)[:, 1:, ::2],
        lambda: np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    ],
    ids=["strided", "transposed", "sliced_3d", "fortran"],
)
def test_non_contiguous_arrays_round_trip(make):
    array = make()
    np.testing.assert_array_equal(round_trip(array), array)


def test_zero_dim_and_empty_arrays_round_trip():
    for array in (np.array(3.25), np.array(7, dtype=np.int16), np.zeros((0, 4)), np.zeros(0, dtype=np.uint8)):
        result = round_trip(array)
        assert result.shape == array.shape and result.dtype == array.dtype
        np.testing.assert_array_equal(result, array)


def test_arrays_from_a_readonly_view_are_readonly_aligned_and_zero_copy():
    first = np.arange(1000, dtype=np.float64)
    second = np.arange(333, dtype=np.int8)  # odd size: the next buffer must be re-aligned
    third = np.ones((10, 10), dtype=np.complex64)
    serialized = serialize({"a": first, "b": second, "c": third, "meta": "x" * 13})
    assert len(serialized.buffers) == 3
    view = aligned_readonly_view(serialized)
    result = deserialize(view)
    assert result["meta"] == "x" * 13
    for key, original in (("a", first), ("b", second), ("c", third)):
        array = result[key]
        np.testing.assert_array_equal(array, original)
        assert not array.flags.writeable
        assert inside(array, view), f"{key} was copied"
        assert array.ctypes.data % ALIGN == 0, f"{key} is not {ALIGN}-byte aligned"
    with pytest.raises(ValueError):
        result["a"][0] = 1.0


def test_arrays_from_a_writable_buffer_alias_it():
    serialized = serialize(np.arange(100, dtype=np.int32))
    backing = bytearray(serialized.total_bytes)
    serialized.write_into(memoryview(backing))
    array = deserialize(memoryview(backing))
    assert inside(array, memoryview(backing))


def test_to_bytes_equals_write_into_a_buffer_of_total_bytes():
    for value in (np.arange(10.0), {"x": np.zeros(3, dtype=np.int8), "y": np.ones(70)}, [1, "two"], b"", None):
        serialized = serialize(value)
        out = bytearray(serialized.total_bytes)
        serialized.write_into(memoryview(out))
        assert serialized.to_bytes() == bytes(out)


def test_buffer_offsets_in_layout_are_aligned():
    serialized = serialize([np.zeros(5, dtype=np.uint8), np.zeros(7, dtype=np.uint8), np.zeros(1)])
    assert len(serialized.buffers) == 3
    assert all(offset % ALIGN == 0 for offset in serialized._offsets)


def test_bad_magic_is_a_value_error():
    data = bytearray(serialize(1).to_bytes())
    data[:4] = b"XXXX"
    with pytest.raises(ValueError, match="magic"):
        deserialize_bytes(bytes(data))


# -- pyarrow --------------------------------------------------------------------------------


def test_pyarrow_table_round_trips():
    table = pa.table(
        {
            "ints": pa.array(range(1000)),
            "strs": pa.array([str(i) for i in range(1000)]),
            "maybe": pa.array([None if i % 3 else 1.5 for i in range(1000)]),
        }
    )
    result = round_trip(table)
    assert result.equals(table)
    assert result.schema == table.schema


def test_pyarrow_table_from_readonly_view():
    table = pa.table({"x": np.arange(5000, dtype=np.int64)})
    serialized = serialize(table)
    view = aligned_readonly_view(serialized)
    assert deserialize(view).equals(table)


# -- code -----------------------------------------------------------------------------------


def test_lambda_and_local_class_round_trip():
    offset = 10
    add = lambda x: x + offset  # noqa: E731

    class Local:
        def __init__(self, value):
            self.value = value

        def doubled(self):
            return self.value * 2

    assert round_trip(add)(5) == 15
    instance = round_trip(Local(21))
    assert instance.doubled() == 42
    assert type(instance).__name__ == "Local"
    assert round_trip(Local)(4).doubled() == 8


@pytest.mark.parametrize(
    "value, type_name",
    [(threading.Lock(), "lock"), ((i for i in range(3)), "generator"), ({"nested": threading.Lock()}, "lock")],
    ids=["lock", "generator", "nested_lock"],
)
def test_unpicklable_value_is_a_type_error_naming_the_type(value, type_name):
    with pytest.raises(TypeError, match=type_name) as info:
        serialize(value)
    assert "picklable" in str(info.value)
    assert type(value).__qualname__ in str(info.value)


class _Holder:
    def __init__(self, inner):
        self.name = "holder"
        self.inner = inner


class _Slotted:
    __slots__ = ("handle",)

    def __init__(self, handle):
        self.handle = handle


@pytest.mark.parametrize(
    "value, where",
    [
        ((1, threading.Lock()), "element 1 (a _thread.lock)"),
        (
            {"ok": 1, "conn": [2, _Holder(threading.Lock())]},
            "key 'conn' -> element 1 -> attribute 'inner' (a _thread.lock)",
        ),
        ([_Slotted(i for i in range(3))], "element 0 -> attribute 'handle' (a builtins.generator)"),
        ((np.zeros(4), {threading.Lock()}), "element 1 -> a member of the set (a _thread.lock)"),
    ],
    ids=["tuple", "dict_list_object", "slots", "set"],
)
def test_unpicklable_message_names_the_innermost_member(value, where):
    with pytest.raises(TypeError) as info:
        serialize(value)
    message = str(info.value)
    assert f"type builtins.{type(value).__name__}: {where} cannot be pickled" in message
    assert "picklable" in message


def test_unpicklable_search_is_bounded_for_deep_and_cyclic_values():
    deep: list = [threading.Lock()]
    for _ in range(50):
        deep = [deep]
    cyclic: list = [1]
    cyclic.append(cyclic)
    cyclic.append(threading.Lock())
    with pytest.raises(TypeError, match="element 0 -> element 0"):
        serialize(deep)
    with pytest.raises(TypeError, match=r"list: element 2 \(a _thread.lock\)"):
        serialize(cyclic)


def test_unpicklable_call_argument_is_named_as_the_call_wrote_it():
    with pytest.raises(TypeError, match=r"the arguments of the call: args\[1\] \(a _thread.lock\) cannot be pickled"):
        serialization.serialize_arguments((1, threading.Lock()), {})
    with pytest.raises(TypeError, match=r"kwargs\['c'\] -> key 'k' \(a _thread.lock\) cannot be pickled"):
        serialization.serialize_arguments((1,), {"c": {"k": threading.Lock()}})
    assert deserialize_bytes(serialization.serialize_arguments((1,), {"c": 2}).to_bytes()) == ((1,), {"c": 2})


def test_unpicklable_definition_names_the_captured_member():
    lock = threading.Lock()

    def uses_lock():
        with lock:
            return 1

    with pytest.raises(TypeError, match="captured variable 'lock' \\(a _thread.lock\\) cannot be pickled"):
        pickle_definition(uses_lock)


def test_failed_serialize_leaves_no_contained_stack_behind():
    with pytest.raises(TypeError):
        serialize(threading.Lock())
    assert serialize([1]).contained == []
    assert not getattr(serialization._state, "contained_stack", [])


# -- contained refs -------------------------------------------------------------------------


class FakeRef:
    def __init__(self, object_id: bytes):
        self.object_id = object_id

    def __reduce__(self):
        note_contained_ref(self.object_id)
        return FakeRef, (self.object_id,)


def test_refs_met_while_pickling_are_recorded_as_contained():
    serialized = serialize({"refs": [FakeRef(b"a"), FakeRef(b"b")], "n": 1})
    assert serialized.contained == [b"a", b"b"]
    assert round_trip([FakeRef(b"a")])[0].object_id == b"a"
    assert serialize([1, 2]).contained == []


def test_contained_refs_of_nested_serialize_do_not_leak_outward():
    class Inner:
        def __reduce__(self):
            inner = serialize(FakeRef(b"inner"))
            assert inner.contained == [b"inner"]
            return bytes, (inner.to_bytes(),)

    outer = serialize([FakeRef(b"outer"), Inner()])
    assert outer.contained == [b"outer"]


def test_note_contained_ref_outside_serialize_is_ignored():
    note_contained_ref(b"stray")
    assert serialize(1).contained == []


# -- definitions ----------------------------------------------------------------------------


def square(x):
    return x * x


def cube(x):
    return x * x * x


def test_pickle_definition_hash_is_stable_and_content_based():
    first_id, first_payload = pickle_definition(square)
    second_id, second_payload = pickle_definition(square)
    assert first_id == second_id and first_payload == second_payload
    assert len(first_id) == 16
    assert pickle_definition(cube)[0] != first_id
    assert serialization.load_definition(first_payload)(7) == 49


def test_pickle_definition_of_unpicklable_closure_is_a_type_error():
    lock = threading.Lock()

    def uses_lock():
        with lock:
            return 1

    with pytest.raises(TypeError, match="uses_lock"):
        pickle_definition(uses_lock)


def _registered_by_value(module_name: str) -> bool:
    return module_name in serialization._BY_VALUE_MODULES


def test_ship_module_by_value_is_a_noop_for_stdlib_and_libraries():
    for name in (
        "json",
        "threading",
        "numpy",
        "cloudpickle",
        "shoal._core.protocol",
        "sys",
        None,
        "",
        "__main__",
        "module_that_is_not_imported",
    ):
        ship_module_by_value(name)
        if name:
            assert not _registered_by_value(name)
    assert json.dumps is cloudpickle.loads(cloudpickle.dumps(json.dumps))


def test_ship_module_by_value_registers_user_modules():
    ship_module_by_value(__name__)
    assert _registered_by_value(__name__)
    ship_module_by_value(__name__)  # idempotent
