"""Objects: put/get, zero-copy reads, reference counting, spilling, wait."""

from __future__ import annotations

import gc
import time

import numpy as np
import pyarrow as pa
import pytest
import shoal
from shoal import exceptions

from tests.waiting import wait_for

MB = 1024 * 1024


@pytest.fixture(scope="module")
def small_store():
    shoal.init(num_cpus=2, object_store_memory=128 * MB)
    yield
    shoal.shutdown()


def store_free() -> float:
    return shoal.available_resources().get("object_store_memory", 0)


def empty_store_free() -> float:
    """Free store bytes once objects from earlier tests have been released."""
    total = shoal.cluster_resources()["object_store_memory"]
    wait_for(lambda: store_free() == total, 5, describe=lambda: store_free())
    return total


def test_put_get_values(small_store):
    for value in [1, "text", None, {"a": [1, 2]}, b"bytes" * 1000, (1, 2.5)]:
        assert shoal.get(shoal.put(value)) == value


def test_large_numpy_is_zero_copy_and_read_only(small_store):
    array = np.arange(4 * MB, dtype=np.float64)
    ref = shoal.put(array)
    out = shoal.get(ref)
    np.testing.assert_array_equal(out, array)
    assert not out.flags.writeable
    assert out.base is not None
    with pytest.raises(ValueError):
        out[0] = 1.0


def test_small_numpy_is_read_only_too(small_store):
    out = shoal.get(shoal.put(np.arange(10)))
    assert not out.flags.writeable


def test_arrow_table_round_trip_zero_copy(small_store):
    table = pa.table({"x": np.arange(1_000_000), "y": np.ones(1_000_000)})
    out = shoal.get(shoal.put(table))
    assert out.equals(table)


def test_task_returns_large_array(small_store):
    @shoal.remote
    def make():
        return np.full(2 * MB, 7, dtype=np.int64)

    out = shoal.get(make.remote())
    assert out.shape == (2 * MB,) and out[0] == 7 and not out.flags.writeable


def test_memory_is_freed_when_refs_drop(small_store):
    baseline = empty_store_free()
    ref = shoal.put(np.zeros(8 * MB // 8 * 4))  # 32 MB
    wait_for(lambda: store_free() < baseline - 30 * MB, 5, describe=lambda: store_free())
    del ref
    gc.collect()
    wait_for(lambda: store_free() >= baseline - MB, 5, describe=lambda: store_free())


def test_array_keeps_object_alive_after_ref_dropped(small_store):
    baseline = empty_store_free()
    ref = shoal.put(np.ones(4 * MB))
    array = shoal.get(ref)
    del ref
    gc.collect()
    time.sleep(0.3)
    assert store_free() < baseline - 30 * MB  # still pinned by the array
    assert array.sum() == 4 * MB
    del array
    gc.collect()
    wait_for(lambda: store_free() >= baseline - MB, 5, describe=lambda: store_free())


def test_spilling_when_store_is_full(small_store):
    refs = [shoal.put(np.full(5 * MB, i, dtype=np.float64)) for i in range(6)]  # 240 MB > 128 MB
    for i, ref in enumerate(refs):
        out = shoal.get(ref)
        assert out[0] == i and out[-1] == i
        del out


def test_object_bigger_than_store_raises(small_store):
    with pytest.raises(exceptions.ObjectStoreFullError, match="larger than the object store"):
        shoal.put(np.zeros(200 * MB // 8))


def test_nested_refs_stay_alive_inside_objects(small_store):
    inner = shoal.put(np.arange(2 * MB))
    outer = shoal.put({"inner": inner})
    del inner
    gc.collect()
    time.sleep(0.2)
    got = shoal.get(outer)
    assert shoal.get(got["inner"]).sum() == np.arange(2 * MB).sum()


def test_put_of_ref_is_rejected(small_store):
    ref = shoal.put(1)
    with pytest.raises(TypeError, match="ObjectRef"):
        shoal.put(ref)
    assert shoal.get(shoal.put([ref]))[0] == ref


def test_wait_semantics(small_store):
    @shoal.remote
    def sleep_then(value, seconds):
        time.sleep(seconds)
        return value

    fast = sleep_then.remote("fast", 0)
    slow = sleep_then.remote("slow", 2)
    ready, not_ready = shoal.wait([slow, fast], num_returns=1, timeout=5)
    assert ready == [fast] and not_ready == [slow]
    ready, not_ready = shoal.wait([slow, fast], num_returns=2, timeout=0.1)
    assert ready == [fast] and not_ready == [slow]
    ready, not_ready = shoal.wait([slow, fast], num_returns=2)
    assert ready == [slow, fast] and not_ready == []


def test_wait_rejects_bad_input(small_store):
    ref = shoal.put(1)
    with pytest.raises(ValueError, match="duplicates"):
        shoal.wait([ref, ref])
    with pytest.raises(ValueError, match="exceed"):
        shoal.wait([ref], num_returns=2)
    with pytest.raises(TypeError):
        shoal.wait(ref)
    with pytest.raises(ValueError):
        shoal.wait([ref], timeout=-1)


def test_get_rejects_non_refs_in_driver(small_store):
    with pytest.raises(ValueError, match="ObjectRef"):
        shoal.get(5)
    with pytest.raises(ValueError, match="ObjectRef"):
        shoal.get([shoal.put(1), 5])


def test_get_of_resolved_argument_inside_task(small_store):
    @shoal.remote
    def uses_get(value, other):
        same = shoal.get(value)
        try:
            shoal.get(other)
        except ValueError:
            return same, "raised"
        return same, "no error"

    ref = shoal.put(np.arange(5))
    same, outcome = shoal.get(uses_get.remote(ref, 3))
    assert list(same) == [0, 1, 2, 3, 4]
    assert outcome == "raised"


def test_many_small_puts(small_store):
    refs = [shoal.put({"i": i}) for i in range(2000)]
    assert [v["i"] for v in shoal.get(refs)] == list(range(2000))


def test_store_full_of_arrays_in_use_raises_after_waiting(run_script):
    result = run_script(
        """
        import time
        import numpy as np
        import shoal
        from shoal import exceptions

        MB = 1024 * 1024
        shoal.init(num_cpus=1, object_store_memory=64 * MB)
        arrays = [shoal.get(shoal.put(np.ones(3 * MB))) for _ in range(2)]  # 48 MB in use
        started = time.monotonic()
        try:
            shoal.put(np.ones(3 * MB))
        except exceptions.ObjectStoreFullError as error:
            print("full after %.1f s: %s" % (time.monotonic() - started, error))
        del arrays
        shoal.put(np.ones(3 * MB))  # room again once the arrays are gone
        print("stored")
        shoal.shutdown()
        """,
        env={"SHOAL_ALLOCATION_WAIT_S": "0.5"},
    )
    assert "full after" in result.stdout and "in use by a reader" in result.stdout
    assert "stored" in result.stdout


def test_repeated_get_of_large_object_is_local(small_store):
    ref = shoal.put(np.arange(4 * MB))
    first = shoal.get(ref)
    second = shoal.get(ref)
    assert first.__array_interface__["data"][0] == second.__array_interface__["data"][0]
