"""Unit tests for LocalObjects: user threads wait in collect/wait_ready, the test plays the I/O thread.

Each waiting call runs on a short-lived thread with a timeout below one second; the test thread
learns what the getter asked for through a queue, so nothing sleeps and nothing can hang.
"""

from __future__ import annotations

import queue
import threading

import pytest

from shoal._core.local_objects import MARKER_OFFSET, LocalObjects
from shoal._core.protocol import ObjectValue

A, B, C = b"a" * 20, b"b" * 20, b"c" * 20
STEP_S = 0.5  # bound on every wait in this file


def inline(object_id: bytes, data: bytes = b"v") -> ObjectValue:
    return ObjectValue(object_id, data)


def delivery(object_id: bytes, offset: int = 64) -> ObjectValue:
    return ObjectValue(object_id, None, shm_offset=offset, shm_size=10)


def no_request(ids):
    raise AssertionError(f"unexpected request for {ids}")


class Getter:
    """Runs one collect() or wait_ready() on its own thread and reports its requests."""

    def __init__(self, call, *args, timeout_s: float = STEP_S, on_block=None):
        self.requests: queue.Queue = queue.Queue()
        self.blocks: list[bool] = []
        self.blocked = threading.Event()
        self._on_block = on_block
        self.result = self.error = None
        self.thread = threading.Thread(target=self._run, args=(call, args, timeout_s), name="test-getter", daemon=True)
        self.thread.start()

    def _run(self, call, args, timeout_s):
        try:
            self.result = call(*args, timeout_s, self.requests.put, self._block)
        except BaseException as exc:  # reported to the test thread by join()
            self.error = exc

    def _block(self, blocked: bool) -> None:
        self.blocks.append(blocked)
        if blocked:
            self.blocked.set()
            if self._on_block is not None:
                self._on_block()

    def next_request(self) -> list:
        try:
            return self.requests.get(timeout=STEP_S)
        except queue.Empty:
            raise AssertionError(f"getter made no request within {STEP_S} s") from None

    def join(self):
        self.thread.join(2 * STEP_S)
        assert not self.thread.is_alive(), "getter did not return"
        if self.error is not None:
            raise self.error
        assert self.requests.empty(), f"unexpected extra request {self.requests.get()}"
        return self.result


def collect(objects: LocalObjects, ids, **kwargs) -> Getter:
    return Getter(objects.collect, list(ids), **kwargs)


# -- collect --------------------------------------------------------------------------------


def test_cached_inline_values_return_without_request_or_block():
    objects = LocalObjects()
    objects.put_local(inline(A, b"1"))
    objects.put_local(ObjectValue(B, b"boom", is_error=True))
    blocks = []
    result = objects.collect([A, B, A], 0.1, no_request, blocks.append)
    assert [value.data for value in result] == [b"1", b"boom", b"1"]
    assert blocks == []
    assert objects.needs == {}


def test_unknown_ids_are_requested_once_and_waited_for():
    objects = LocalObjects()
    objects.put_local(inline(C))
    getter = collect(objects, [A, B, C, A])
    assert getter.next_request() == [A, B]
    assert getter.blocked.wait(STEP_S)
    objects.arrived([inline(A, b"x")])
    assert getter.thread.is_alive()
    objects.arrived([inline(B, b"y")])
    result = getter.join()
    assert [value.data for value in result] == [b"x", b"y", b"v", b"x"]
    assert getter.blocks == [True, False]
    assert objects.needs == {} and objects.requested == set()


def test_expected_returns_are_not_requested():
    objects = LocalObjects()
    objects.expect([A])
    getter = collect(objects, [A])
    assert getter.blocked.wait(STEP_S)
    objects.arrived([inline(A)])
    assert getter.join()[0].data == b"v"
    assert A not in objects.expected


def test_marker_triggers_a_new_request_and_waits_for_a_delivery():
    objects = LocalObjects()
    getter = collect(objects, [A])
    assert getter.next_request() == [A]
    objects.arrived([delivery(A, offset=128)])
    [first] = getter.join()
    assert first.shm_offset == 128 and first.data is None
    assert objects.values[A].shm_offset == MARKER_OFFSET  # ready, but the location is not cached
    assert objects.deliveries == {}
    # A second get finds only the marker: it must ask again for a freshly pinned location.
    getter = collect(objects, [A])
    assert getter.next_request() == [A]
    assert getter.blocked.wait(STEP_S)
    assert getter.thread.is_alive()
    objects.arrived([delivery(A, offset=256)])
    assert getter.join()[0].shm_offset == 256
    assert objects.take_released_pins() == []


def test_deliveries_beyond_needs_are_released():
    objects = LocalObjects()
    getter = collect(objects, [A])
    assert getter.next_request() == [A]
    objects.arrived([delivery(A, 1), delivery(A, 2)])
    assert getter.join()[0].shm_offset == 1
    assert objects.take_released_pins() == [A]
    objects.arrived([delivery(A, 3)])  # nobody needs it
    assert objects.take_released_pins() == [A]
    assert objects.take_released_pins() == []
    assert objects.deliveries == {}


def test_timeout_returns_none_and_undoes_needs():
    objects = LocalObjects()
    requests, blocks = [], []
    assert objects.collect([A, B], 0.02, requests.append, blocks.append) is None
    assert requests == [[A, B]]
    assert blocks == [True, False]
    assert objects.needs == {}
    # A delivery arriving after the getter gave up is handed straight back.
    objects.arrived([delivery(A)])
    assert objects.take_released_pins() == [A]


def test_zero_timeout_on_a_marker_returns_none_and_releases_late_delivery():
    objects = LocalObjects()
    objects.arrived([delivery(A)])
    assert objects.take_released_pins() == [A]  # nobody needed it; the marker stays
    requests = []
    assert objects.collect([A], 0, requests.append, lambda blocked: None) is None
    assert requests == [[A]]
    objects.arrived([delivery(A)])
    assert objects.take_released_pins() == [A]


def test_close_wakes_getters_with_the_reason():
    objects = LocalObjects()
    getter = collect(objects, [A])
    assert getter.next_request() == [A]
    objects.close("node manager died")
    with pytest.raises(RuntimeError, match="node manager died"):
        getter.join()
    assert objects.needs == {}


def test_two_getters_of_one_arena_object_both_get_it():
    # The first getter asks; the second sees the request outstanding and only waits. If the
    # second consumes the one delivery, the first must ask again instead of waiting forever.
    objects = LocalObjects()
    first_may_go = threading.Event()
    first = collect(objects, [A], on_block=lambda: first_may_go.wait(STEP_S))
    assert first.next_request() == [A]
    assert first.blocked.wait(STEP_S)  # parked in on_block, outside the lock
    second = collect(objects, [A])
    assert second.blocked.wait(STEP_S)
    objects.arrived([delivery(A, offset=64)])
    assert second.join()[0].shm_offset == 64
    first_may_go.set()
    assert first.next_request() == [A]
    objects.arrived([delivery(A, offset=128)])
    assert first.join()[0].shm_offset == 128


# -- reference events -----------------------------------------------------------------------


def test_ref_events_fold_into_increments_and_decrements():
    # Not netted: a ref created and dropped between flushes must still reach the node manager
    # as +1 (before messages that use it) and -1 (after them).
    objects = LocalObjects()
    increments, decrements = objects.apply_ref_events([(A, 1), (A, 1), (B, 1), (A, -1), (C, 1), (C, -1)])
    assert increments == {A: 2, B: 1, C: 1}
    assert decrements == {A: -1, C: -1}
    assert objects.local_refs == {A: 1, B: 1}
    assert objects.apply_ref_events([(B, -1)]) == ({}, {B: -1})
    assert objects.local_refs == {A: 1}
    assert objects.apply_ref_events([]) == ({}, {})


def test_inline_arrival_is_cached_only_while_referenced():
    objects = LocalObjects()
    objects.arrived([inline(A)])
    assert A not in objects.values  # nobody holds a ref or waits: dropped
    objects.apply_ref_events([(A, 1)])
    objects.arrived([inline(A)])
    assert objects.values[A].data == b"v"
    objects.apply_ref_events([(A, 1)])
    objects.apply_ref_events([(A, -1)])
    assert A in objects.values
    objects.apply_ref_events([(A, -1)])
    assert A not in objects.values


def test_last_ref_gone_evicts_marker_and_expected():
    objects = LocalObjects()
    objects.apply_ref_events([(A, 1)])
    objects.expect([A])
    objects.arrived([delivery(A)])
    objects.take_released_pins()
    objects.expect([A])
    objects.apply_ref_events([(A, -1)])
    assert A not in objects.values and A not in objects.expected


def test_eviction_spares_values_a_getter_needs():
    objects = LocalObjects()
    objects.apply_ref_events([(A, 1)])
    getter = collect(objects, [A])
    assert getter.next_request() == [A]
    objects.arrived([inline(A, b"kept")])
    objects.apply_ref_events([(A, -1)])
    assert getter.join()[0].data == b"kept"


# -- wait_ready -----------------------------------------------------------------------------


def wait(objects: LocalObjects, ids, num_returns: int, **kwargs) -> Getter:
    return Getter(lambda *args: objects.wait_ready(list(ids), num_returns, *args), **kwargs)


def test_wait_ready_returns_once_enough_are_ready_in_input_order():
    objects = LocalObjects()
    objects.apply_ref_events([(A, 1), (B, 1), (C, 1)])
    objects.expect([B])
    getter = wait(objects, [A, B, C], 2)
    assert getter.next_request() == [A, C]
    assert getter.blocked.wait(STEP_S)
    objects.arrived([inline(C)])
    assert getter.thread.is_alive()
    objects.arrived([delivery(A)])  # an arena value counts as ready through its marker
    assert getter.join() == [A, C]
    assert getter.blocks == [True, False]
    assert objects.take_released_pins() == [A]


def test_wait_ready_already_ready_returns_without_blocking():
    objects = LocalObjects()
    objects.put_local(inline(A))
    blocks = []
    assert objects.wait_ready([B, A], 1, 0.1, no_request, blocks.append) == [A]
    assert blocks == []


def test_wait_ready_timeout_returns_what_is_ready():
    objects = LocalObjects()
    objects.put_local(inline(A))
    requests, blocks = [], []
    assert objects.wait_ready([A, B], 2, 0.02, requests.append, blocks.append) == [A]
    assert requests == [[B]]
    assert blocks == [True, False]
    # The request stays outstanding: a second wait does not repeat it.
    assert objects.wait_ready([A, B], 2, 0, no_request, lambda blocked: None) == [A]


def test_wait_ready_raises_when_closed():
    objects = LocalObjects()
    objects.close("shutting down")
    with pytest.raises(RuntimeError, match="shutting down"):
        objects.wait_ready([A], 1, 0.1, no_request, lambda blocked: None)
