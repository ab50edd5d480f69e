"""Gets of more than the object store holds: every value arrives, every pin comes back, no ref is lost."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest
import shoal

from tests.waiting import wait_for

MB = 1024 * 1024
VALUE_BYTES = 20_000_000  # 12 of them overflow the 200 MiB store


@pytest.fixture(scope="module")
def store_200mb():
    # Were a parked restore to wait out allocation_wait_s, these tests would run into their
    # timeouts: a get is answered as soon as the driver says which pins it keeps.
    previous = os.environ.get("SHOAL_ALLOCATION_WAIT_S")
    os.environ["SHOAL_ALLOCATION_WAIT_S"] = "600"
    try:
        shoal.init(num_cpus=1, object_store_memory=200 * MB)
    finally:
        if previous is None:
            del os.environ["SHOAL_ALLOCATION_WAIT_S"]
        else:
            os.environ["SHOAL_ALLOCATION_WAIT_S"] = previous
    yield
    shoal.shutdown()


def store_free() -> float:
    return shoal.available_resources().get("object_store_memory", 0)


def wait_store_empty() -> None:
    gc.collect()
    total = shoal.cluster_resources()["object_store_memory"]
    wait_for(lambda: store_free() == total, 20, describe=lambda: f"{store_free()} of {total} bytes free")


def put_values(count: int) -> list:
    return [shoal.put(np.full(VALUE_BYTES // 8, index, dtype=np.float64)) for index in range(count)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("count", [12, 30])
def test_get_of_more_than_the_store_returns_every_value(store_200mb, count):
    refs = put_values(count)
    values = shoal.get(refs)
    assert [(value[0], value[-1]) for value in values] == [(index, index) for index in range(count)]
    del values
    for index, ref in enumerate(refs):  # none is lost: each reads back alone, too
        value = shoal.get(ref, timeout=60)
        assert value[0] == index and value[-1] == index
        del value
    again = shoal.get(refs)
    assert [value[0] for value in again] == list(range(count))
    del again, refs, ref
    wait_store_empty()


@pytest.mark.timeout(120)
def test_get_that_raises_releases_the_values_after_the_error(store_200mb):
    @shoal.remote
    def fail():
        raise ValueError("boom")

    first, last = put_values(2)
    with pytest.raises(ValueError, match="boom"):
        shoal.get([first, fail.remote(), last])
    del first, last
    wait_store_empty()


def _explode():
    raise RuntimeError("this value cannot be loaded here")


class Unloadable:
    def __reduce__(self):
        return (_explode, ())


@pytest.mark.timeout(120)
def test_a_value_that_fails_to_load_releases_the_values_after_it(store_200mb):
    bad = shoal.put(Unloadable())
    [last] = put_values(1)
    with pytest.raises(RuntimeError, match="cannot be loaded here"):
        shoal.get([bad, last])
    del bad, last
    wait_store_empty()


@pytest.mark.timeout(120)
def test_get_of_one_ref_twice_releases_both_views(store_200mb):
    [ref] = put_values(1)
    one, two = shoal.get([ref, ref])
    assert one[0] == two[0] == 0
    del one, two, ref
    wait_store_empty()


# Allocations parked at once while every stored object is pinned by the driver's cache: each must
# get pins asked back for its own room. Without that, the second one parked behind the first
# waited out SHOAL_ALLOCATION_WAIT_S and the put raised ObjectStoreFullError, with nothing pinned
# but cached locations the driver would have handed back at once.
HELD_STORE_SCRIPT = """
import os
import threading

import numpy as np
import shoal

SIZE = 4 * 2**20
COUNT = 160  # ten times the store's size, all held at once
shoal.init(num_cpus=2, object_store_memory=64 * 2**20)

@shoal.remote
def make(index):
    return np.full(SIZE // 8, index, dtype=np.int64)

def value(index):
    return np.full(SIZE // 8, index, dtype=np.int64)

refs = {}
if os.environ["HELD_SHAPE"] == "half_from_tasks":
    for index in range(COUNT):
        refs[index] = shoal.put(value(index)) if index % 2 else make.remote(index)
else:  # putters in parallel threads
    errors = []
    def putter(first):
        try:
            for index in range(first, COUNT, 4):
                refs[index] = shoal.put(value(index))
        except Exception as error:
            errors.append(error)
    threads = [threading.Thread(target=putter, args=(first,)) for first in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
wrong = []
for index in range(COUNT):
    array = shoal.get(refs[index], timeout=60)
    if not (array.nbytes == SIZE and array.min() == index == array.max()):
        wrong.append(index)
    del array
assert len(refs) == COUNT and not wrong, f"wrong values: {wrong}"
print("held", len(refs), "values, all correct")
shoal.shutdown()
"""


@pytest.mark.timeout(240)
@pytest.mark.parametrize("shape", ["half_from_tasks", "parallel_putters"])
def test_values_held_beyond_the_store_spill_while_allocations_queue(run_script, shape):
    env = {"HELD_SHAPE": shape, "SHOAL_ALLOCATION_WAIT_S": "5", "SHOAL_NONINTERACTIVE": "1"}
    result = run_script(HELD_STORE_SCRIPT, timeout_s=200, env=env)
    assert "held 160 values, all correct" in result.stdout
