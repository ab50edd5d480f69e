"""(10) Store pressure: ten times the object store's size goes through a small store, every
value checked; the same held all at once (the store spills); then one `get` of more than the
store can hold, which must return every value right or fail at once with a clear error, never
hang and never hand back another object's bytes.

Every value is filled with its own index, so a value read from the wrong place or overwritten
shows up as another index.
"""

from __future__ import annotations

import numpy as np
import pytest
import shoal

from tests.reliability import faults

WINDOW = 4  # refs kept alive while streaming: well under the store's size
GET_TIMEOUT_S = 60.0
CLEAR_STORE_ERRORS = (shoal.exceptions.ObjectStoreFullError, shoal.exceptions.OutOfMemoryError)


@pytest.fixture
def store(chaos_scale):
    shoal.init(num_cpus=2, object_store_memory=chaos_scale.store_bytes)
    try:
        yield chaos_scale.store_bytes
    finally:
        shoal.shutdown()


def _value(index: int, size_bytes: int) -> np.ndarray:
    return np.full(size_bytes // 8, index, dtype=np.int64)


def _holds(index: int, array, size_bytes: int) -> bool:
    return isinstance(array, np.ndarray) and array.nbytes == size_bytes and bool(array.min() == index == array.max())


@shoal.remote
def make(index, size_bytes):
    return _value(index, size_bytes)


def _count(chaos_scale) -> int:
    return chaos_scale.store_multiple * chaos_scale.store_bytes // chaos_scale.store_value_bytes


def test_ten_stores_stream_through_a_small_store(store, chaos_scale, figures):
    size, count = chaos_scale.store_value_bytes, _count(chaos_scale)
    figures.input_kind = "MiB put and read back"
    figures.parameters = {"store_bytes": store, "value_bytes": size, "values": count, "alive_at_once": WINDOW}
    window = []
    for index in range(count):
        window.append((index, shoal.put(_value(index, size))))
        figures.inputs += size // 2**20
        if len(window) > WINDOW:
            first, ref = window.pop(0)
            figures.results += 1
            figures.correct += _holds(first, shoal.get(ref, timeout=GET_TIMEOUT_S), size)
    for first, ref in window:
        figures.results += 1
        figures.correct += _holds(first, shoal.get(ref, timeout=GET_TIMEOUT_S), size)
    assert figures.correct == figures.results == count


def test_ten_stores_held_at_once_spill_and_come_back(store, chaos_scale, figures):
    size, count = chaos_scale.store_value_bytes, _count(chaos_scale)
    figures.input_kind = "MiB held"
    figures.parameters = {"store_bytes": store, "value_bytes": size, "values": count, "half_from_tasks": True}
    refs = []
    try:
        for index in range(count):
            refs.append(shoal.put(_value(index, size)) if index % 2 else make.remote(index, size))
            figures.inputs += size // 2**20
    except shoal.exceptions.RayError as error:
        figures.note(f"put {index} of {count} raised {type(error).__name__}: {str(error).splitlines()[0][:200]}")
    # One at a time: a get of them all is the next scenario.
    tally = faults.check_results(refs, lambda index, array: _holds(index, array, size), GET_TIMEOUT_S, together=False)
    figures.results, figures.correct, figures.hangs = tally.checked, tally.correct, tally.hangs
    figures.note(tally.summary())
    assert len(refs) == count and tally.correct == count, figures.notes


def test_one_get_of_more_than_the_store_holds(store, chaos_scale, figures):
    size = chaos_scale.store_value_bytes
    count = 2 * store // size  # twice what the store can map at once
    figures.input_kind = "MiB in one get"
    figures.parameters = {"store_bytes": store, "value_bytes": size, "values": count}
    refs = [shoal.put(_value(index, size)) for index in range(count)]
    figures.inputs = count * size // 2**20
    figures.results = count
    try:
        values = shoal.get(refs, timeout=GET_TIMEOUT_S)
    except shoal.exceptions.GetTimeoutError:
        figures.hangs = 1
        figures.note(f"get of {count} values ({figures.inputs} MiB) into a {store // 2**20} MiB store timed out")
    except CLEAR_STORE_ERRORS as error:
        figures.correct = count  # a clear, immediate refusal is a correct answer
        figures.note(f"refused: {type(error).__name__}: {str(error)[:200]}")
    except Exception as error:  # anything else is shoal failing inside get
        figures.crashes = 1
        figures.note(f"get raised {type(error).__name__}: {str(error)[:200]}")
    else:
        figures.correct = sum(_holds(index, array, size) for index, array in enumerate(values))
        del values
    assert figures.crashes == 0 and figures.hangs == 0 and figures.correct == count, figures.notes
    # The store still works afterwards.
    assert _holds(7, shoal.get(shoal.put(_value(7, size)), timeout=GET_TIMEOUT_S), size)
