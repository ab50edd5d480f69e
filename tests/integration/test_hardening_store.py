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
