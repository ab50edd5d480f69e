"""Unit tests for LocalObjects: user threads wait in collect/wait_ready, the test plays the I/O thread.

The I/O-thread side (arrived, apply_ref_events, revoke) is driven from the test thread. A getter
runs on a short-lived thread only where it must block; it reports what it asked for through a
queue and every wait is bounded below one second, so nothing sleeps and nothing can hang.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter

import pytest
from shoal._core.local_objects import MARKER_OFFSET, LocalObjects, PinnedLocation
from shoal._core.protocol import ObjectValue

A, B, C = b"a" * 20, b"b" * 20, b"c" * 20
STEP_S = 0.5  # bound on every wait in this file


def inline(object_id: bytes, data: bytes = b"v") -> ObjectValue:
    return ObjectValue(object_id, data)


def delivery(object_id: bytes, offset: int = 64) -> ObjectValue:
    return ObjectValue(object_id, None, shm_offset=offset, shm_size=10)


def no_request(ids):
    raise AssertionError(f"unexpected request for {ids}")


def hold(objects: LocalObjects, *object_ids: bytes) -> None:
    objects.apply_ref_events([(object_id, 1) for object_id in object_ids])


def drop(objects: LocalObjects, *object_ids: bytes) -> None:
    objects.apply_ref_events([(object_id, -1) for object_id in object_ids])


def collect_now(objects: LocalObjects, ids) -> list:
    """A collect that must be served from the cache: no request, no block."""
    blocks: list = []
    result = objects.collect(list(ids), STEP_S, no_request, blocks.append)
    assert blocks == []
    return result


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


# -- collect: inline values and waiting -----------------------------------------------------


def test_cached_inline_values_return_without_request_or_block():
    objects = LocalObjects()
    objects.put_local(inline(A, b"1"))
    objects.put_local(ObjectValue(B, b"boom", is_error=True))
    result = collect_now(objects, [A, A, B, A])
    assert [value.data for value in result] == [b"1", b"1", b"boom"]  # up to the first error
    assert objects.getters == {}


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
    assert objects.getters == {} and objects.requested == set()


def test_expected_returns_are_not_requested():
    objects = LocalObjects()
    objects.expect([A])
    getter = collect(objects, [A])
    assert getter.blocked.wait(STEP_S)
    objects.arrived([inline(A)])
    assert getter.join()[0].data == b"v"
    assert A not in objects.expected


def test_timeout_returns_none_and_unregisters_the_getter():
    objects = LocalObjects()
    requests, blocks = [], []
    assert objects.collect([A, B], 0.02, requests.append, blocks.append) is None
    assert requests == [[A, B]]
    assert blocks == [True, False]
    assert objects.getters == {}
    # A delivery arriving after the getter gave up is handed straight back and not cached.
    objects.arrived([delivery(A)])
    assert objects.take_released_pins() == [A]
    assert objects.locations == {} and A not in objects.values


def test_zero_timeout_requests_and_a_late_delivery_is_released():
    objects = LocalObjects()
    objects.arrived([delivery(A)])
    assert objects.take_released_pins() == [A]  # nobody wanted it
    requests = []
    assert objects.collect([A], 0, requests.append, lambda blocked: None) is None
    assert requests == [[A]]
    objects.arrived([delivery(A)])
    assert objects.take_released_pins() == [A]
    assert objects.locations == {}


def test_close_wakes_getters_with_the_reason():
    objects = LocalObjects()
    getter = collect(objects, [A])
    assert getter.next_request() == [A]
    objects.close("node manager died")
    with pytest.raises(RuntimeError, match="node manager died"):
        getter.join()
    assert objects.getters == {}


# -- collect: pinned arena locations --------------------------------------------------------


def test_delivery_to_a_waiting_getter_returns_a_location_with_a_view():
    objects = LocalObjects()
    hold(objects, A)
    getter = collect(objects, [A])
    assert getter.next_request() == [A]
    assert getter.blocked.wait(STEP_S)
    objects.arrived([delivery(A, offset=128)])
    [location] = getter.join()
    assert isinstance(location, PinnedLocation)
    assert location.value.shm_offset == 128 and location.views == 1 and not location.give_back
    assert objects.values[A].shm_offset == MARKER_OFFSET
    assert objects.locations[A] is location
    assert objects.take_released_pins() == []


def test_delivery_is_cached_and_a_second_collect_needs_no_request():
    objects = LocalObjects()
    hold(objects, A)
    objects.arrived([delivery(A, offset=128)])
    first, again = collect_now(objects, [A, A])
    assert first is again and first.views == 2  # one view per occurrence: each is read once
    [second] = collect_now(objects, [A])
    assert second is first and first.views == 3
    for _ in range(3):
        objects.view_released(first)
    assert objects.locations[A] is first and first.views == 0
    assert objects.take_released_pins() == []


def test_duplicate_delivery_releases_the_extra_pin():
    objects = LocalObjects()
    hold(objects, A)
    objects.arrived([delivery(A, 1), delivery(A, 2)])
    assert objects.locations[A].value.shm_offset == 1
    assert objects.take_released_pins() == [A]
    objects.arrived([delivery(A, 3)])
    assert objects.take_released_pins() == [A]
    assert objects.locations[A].value.shm_offset == 1
    assert collect_now(objects, [A])[0].value.shm_offset == 1


def test_view_released_keeps_the_pin_while_the_ref_is_held_and_releases_after_drop():
    objects = LocalObjects()
    hold(objects, A)
    objects.arrived([delivery(A)])
    [location] = collect_now(objects, [A])
    objects.view_released(location)
    assert objects.locations[A] is location
    assert objects.take_released_pins() == []
    drop(objects, A)
    assert objects.take_released_pins() == [A]
    assert objects.locations == {} and A not in objects.values


def test_getter_without_a_ref_releases_the_pin_with_its_last_view():
    objects = LocalObjects()
    getter = collect(objects, [A])
    assert getter.next_request() == [A]
    objects.arrived([delivery(A)])
    [location] = getter.join()
    assert objects.take_released_pins() == []  # the array is still alive
    objects.view_released(location)
    assert objects.take_released_pins() == [A]
    assert objects.locations == {}


def test_eviction_with_a_live_view_defers_the_release():
    objects = LocalObjects()
    hold(objects, A)
    objects.arrived([delivery(A)])
    [location] = collect_now(objects, [A])
    drop(objects, A)
    assert location.give_back
    assert A not in objects.values
    assert objects.take_released_pins() == []
    objects.view_released(location)
    assert objects.take_released_pins() == [A]
    assert objects.locations == {}


def test_revoke_without_live_views_hands_the_pin_back_at_once():
    objects = LocalObjects()
    hold(objects, A)
    objects.arrived([delivery(A)])
    [location] = collect_now(objects, [A])
    objects.view_released(location)
    objects.revoke([A, B])  # B was never pinned here: ignored
    assert objects.take_released_pins() == [A]
    assert objects.locations == {}
    assert objects.values[A].shm_offset == MARKER_OFFSET  # still ready; a get asks again
    drop(objects, A)
    assert objects.take_released_pins() == []


def test_revoke_with_a_live_view_releases_when_the_view_is_gone():
    objects = LocalObjects()
    hold(objects, A)
    objects.arrived([delivery(A)])
    [location] = collect_now(objects, [A])
    objects.revoke([A])
    assert location.give_back
    assert objects.take_released_pins() == []
    objects.view_released(location)
    assert objects.take_released_pins() == [A]  # released although the ref is still held
    assert objects.locations == {}


def test_get_after_revoke_requests_again_and_the_old_location_keeps_its_pin():
    objects = LocalObjects()
    hold(objects, A)
    objects.arrived([delivery(A, offset=64)])
    [old] = collect_now(objects, [A])
    objects.revoke([A])
    getter = collect(objects, [A])
    assert getter.next_request() == [A]  # a location being given back is not used
    assert getter.blocked.wait(STEP_S)
    objects.arrived([delivery(A, offset=256)])
    [new] = getter.join()
    assert new is not old and new.value.shm_offset == 256 and not new.give_back
    assert objects.locations[A] is new
    assert objects.take_released_pins() == []  # the old array still reads its memory
    objects.view_released(old)
    assert objects.take_released_pins() == [A]
    objects.view_released(new)
    assert objects.take_released_pins() == []  # the new location stays cached for the ref
    assert objects.locations[A] is new
    drop(objects, A)
    assert objects.take_released_pins() == [A]


def test_revoke_reports_the_pins_it_keeps():
    objects = LocalObjects()
    hold(objects, A, B)
    objects.arrived([delivery(A, offset=64), delivery(B, offset=128)])
    [in_use] = collect_now(objects, [A])
    assert objects.revoke([A, B]) == [A]  # B had no array on it: handed back now
    assert objects.take_released_pins() == [B]
    objects.view_released(in_use)
    assert objects.take_released_pins() == [A]


def test_location_revoked_while_the_get_waits_for_another_stays_held():
    objects = LocalObjects()
    hold(objects, A, B)
    objects.arrived([delivery(A, offset=64)])
    getter = collect(objects, [A, B])
    assert getter.next_request() == [B]
    assert getter.blocked.wait(STEP_S)
    # The node manager needs room to restore B and asks for A's pin: the get already holds it.
    assert objects.revoke([A]) == [A]
    assert objects.take_released_pins() == []
    objects.arrived([delivery(B, offset=256)])
    first, second = getter.join()
    assert first.value.shm_offset == 64 and first.views == 1 and first.give_back
    assert second.value.shm_offset == 256 and second.views == 1
    objects.view_released(first)
    objects.view_released(second)
    assert objects.take_released_pins() == [A]  # B stays cached for its ref


def test_timeout_releases_the_locations_the_get_held():
    objects = LocalObjects()
    hold(objects, A)
    objects.arrived([delivery(A, offset=64)])
    assert objects.collect([A, B], 0.02, lambda ids: None, lambda blocked: None) is None
    assert objects.locations[A].views == 0
    assert objects.revoke([A]) == []
    assert objects.take_released_pins() == [A]


def test_values_after_the_first_error_are_not_held():
    objects = LocalObjects()
    hold(objects, A, C)
    objects.arrived([delivery(A, offset=64), delivery(C, offset=128)])
    objects.put_local(ObjectValue(B, b"boom", is_error=True))
    result = collect_now(objects, [A, B, C])
    assert [type(item) for item in result] == [PinnedLocation, ObjectValue]
    assert objects.locations[A].views == 1 and objects.locations[C].views == 0


def copy_of(object_id: bytes, data: bytes = b"bytes") -> ObjectValue:
    """What the node manager sends when the arena has no room to restore a spilled object."""
    return ObjectValue(object_id, data, -1, shm_size=len(data))


def test_copy_serves_its_getters_and_is_not_cached():
    objects = LocalObjects()
    hold(objects, A)
    getter = collect(objects, [A])
    assert getter.next_request() == [A]
    assert getter.blocked.wait(STEP_S)
    objects.arrived([copy_of(A)])
    [value] = getter.join()
    assert value.data == b"bytes"
    assert objects.values[A].data is None and objects.values[A].shm_offset == MARKER_OFFSET  # ready, not cached
    requests = []
    assert objects.collect([A], 0, requests.append, lambda blocked: None) is None
    assert requests == [[A]]  # the next get asks again (the arena may have room by then)
    objects.arrived([copy_of(A)])  # nobody waits any more: dropped
    assert objects.values[A].data is None
    drop(objects, A)
    assert A not in objects.values and objects.take_released_pins() == []


def test_putter_pinned_location_makes_collect_local():
    objects = LocalObjects()
    objects.put_local(ObjectValue(A, None, shm_offset=512, shm_size=10), pinned=True)
    hold(objects, A)
    assert objects.values[A].shm_offset == MARKER_OFFSET
    [location] = collect_now(objects, [A])
    assert location.value.shm_offset == 512 and location.views == 1
    objects.view_released(location)
    assert objects.take_released_pins() == []
    drop(objects, A)
    assert objects.take_released_pins() == [A]


def test_putter_gets_twice_before_its_ref_is_counted():
    # The ref's +1 reaches local_refs only when the I/O thread next flushes, so a putter may
    # get its object before that. The location stays cached while the first array is alive,
    # so the second get must find it (not fail on the popped marker).
    objects = LocalObjects()
    objects.put_local(ObjectValue(A, None, shm_offset=512, shm_size=10), pinned=True)
    [first] = collect_now(objects, [A])
    [second] = collect_now(objects, [A])
    assert second is first and first.views == 2
    objects.view_released(first)
    objects.view_released(second)
    assert objects.take_released_pins() == [A]


def test_two_getters_of_one_arena_object_both_get_it():
    # The first getter asks; the second sees the request outstanding and only waits. One
    # delivery serves both: the first finds the location the second's view keeps cached.
    objects = LocalObjects()
    first_may_go = threading.Event()
    first = collect(objects, [A], on_block=lambda: first_may_go.wait(STEP_S))
    assert first.next_request() == [A]
    assert first.blocked.wait(STEP_S)  # parked in on_block, outside the lock
    second = collect(objects, [A])
    assert second.blocked.wait(STEP_S)
    objects.arrived([delivery(A, offset=64)])
    [second_location] = second.join()
    assert second_location.value.shm_offset == 64
    first_may_go.set()
    [first_location] = first.join()
    assert first_location is second_location and first_location.views == 2
    objects.view_released(first_location)
    assert objects.take_released_pins() == []
    objects.view_released(second_location)
    assert objects.take_released_pins() == [A]


def test_released_pins_match_delivered_pins_over_a_scenario():
    # Every delivered pin (and the putter's pin) is handed back exactly once, never twice.
    objects = LocalObjects()
    delivered: Counter = Counter()
    released: Counter = Counter()

    def deliver(*values):
        delivered.update(value.object_id for value in values)
        objects.arrived(list(values))

    def check():
        released.update(objects.take_released_pins())
        assert all(released[object_id] <= delivered[object_id] for object_id in released), (delivered, released)

    hold(objects, A)
    deliver(delivery(A, 1))
    deliver(delivery(A, 2))  # duplicate
    check()
    a1, a1_again = collect_now(objects, [A]) + collect_now(objects, [A])
    objects.revoke([A])
    deliver(delivery(A, 3))  # replaces the location being given back
    check()
    objects.view_released(a1)
    check()
    objects.view_released(a1_again)
    check()
    [a3] = collect_now(objects, [A])
    objects.revoke([A])
    objects.revoke([A])
    drop(objects, A)
    deliver(delivery(A, 4))  # nobody wants it any more
    check()
    objects.view_released(a3)
    check()

    objects.put_local(ObjectValue(B, None, shm_offset=512, shm_size=10), pinned=True)
    delivered[B] += 1
    hold(objects, B)
    [b] = collect_now(objects, [B])
    objects.revoke([B])
    drop(objects, B)
    check()
    objects.view_released(b)
    check()

    getter = collect(objects, [C])
    assert getter.next_request() == [C]
    deliver(delivery(C))
    [c] = getter.join()
    deliver(delivery(C))  # late duplicate while the array is alive
    check()
    objects.view_released(c)
    check()

    assert released == delivered == Counter({A: 4, B: 1, C: 2})
    assert objects.locations == {} and objects.values == {} and objects.getters == {}


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
    hold(objects, A)
    objects.arrived([inline(A)])
    assert objects.values[A].data == b"v"
    hold(objects, A)
    drop(objects, A)
    assert A in objects.values
    drop(objects, A)
    assert A not in objects.values


def test_last_ref_gone_evicts_location_marker_and_expected():
    objects = LocalObjects()
    hold(objects, A)
    objects.expect([A])
    objects.arrived([delivery(A)])
    assert A in objects.locations and objects.take_released_pins() == []
    objects.expect([A])
    drop(objects, A)
    assert A not in objects.values and A not in objects.expected and A not in objects.locations
    assert objects.take_released_pins() == [A]


def test_eviction_spares_values_a_getter_needs():
    objects = LocalObjects()
    hold(objects, A)
    getter = collect(objects, [A])
    assert getter.next_request() == [A]
    objects.arrived([inline(A, b"kept")])
    drop(objects, A)
    assert getter.join()[0].data == b"kept"
    assert A not in objects.values  # the getter was the last to want it


# -- wait_ready -----------------------------------------------------------------------------


def wait(objects: LocalObjects, ids, num_returns: int, **kwargs) -> Getter:
    return Getter(lambda *args: objects.wait_ready(list(ids), num_returns, *args), **kwargs)


def test_wait_ready_returns_once_enough_are_ready_in_input_order():
    objects = LocalObjects()
    hold(objects, A, B, C)
    objects.expect([B])
    getter = wait(objects, [A, B, C], 2)
    assert getter.next_request() == [A, C]
    assert getter.blocked.wait(STEP_S)
    objects.arrived([inline(C)])
    assert getter.thread.is_alive()
    objects.arrived([delivery(A)])  # an arena value counts as ready through its marker
    assert getter.join() == [A, C]
    assert getter.blocks == [True, False]
    assert objects.take_released_pins() == []  # cached for the ref
    drop(objects, A)
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
