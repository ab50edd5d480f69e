"""A process's view of the objects it uses: cached values, pinned arena locations, waiters.

Shared between the user's threads (get, wait) and the client's I/O thread (arrivals), under
one condition variable. Arena memory is read only through a location this process holds a
pin on. A location is cached (one pin per object) while the process holds a reference to the
object or an array built on it is alive, so repeated gets cost no round trip. The node
manager may ask for pins back (to spill); a pin is handed back as soon as no array uses it.
A get holds a view on each location from the moment it finds it, so a pin asked back while
the get still waits for other objects stays until the get's values are gone. When the arena
has no room to restore a spilled object, the node manager sends a copy of its bytes instead
(`is_copy`): it is kept only for the getters waiting on it, never cached.
"""

from __future__ import annotations

import threading
import time

from .protocol import ObjectValue

MARKER_OFFSET = -2  # "ready, in the arena": ask the node manager for a pinned location


def is_inline(value: ObjectValue) -> bool:
    return value.data is not None


def is_delivery(value: ObjectValue) -> bool:
    return value.data is None and value.shm_offset >= 0


def is_copy(value: ObjectValue) -> bool:
    """The bytes of an arena object, sent because the arena had no room for it."""
    return value.data is not None and value.shm_size > 0


def _marker(value: ObjectValue) -> ObjectValue:
    return ObjectValue(value.object_id, None, MARKER_OFFSET, value.shm_size, value.is_error, value.contained)


class PinnedLocation:
    __slots__ = ("value", "views", "give_back")

    def __init__(self, value: ObjectValue):
        self.value = value
        self.views = 0  # arrays (read views) alive on this memory
        self.give_back = False  # hand the pin back once views reach zero


class LocalObjects:
    def __init__(self) -> None:
        self.cond = threading.Condition(threading.RLock())
        self.values: dict[bytes, ObjectValue] = {}  # inline values, errors, arena markers
        self.locations: dict[bytes, PinnedLocation] = {}  # pinned arena locations
        self.getters: dict[bytes, int] = {}  # threads waiting in get for an object
        self.waiters: dict[bytes, list] = {}  # object id -> _Waiters counting it down
        self.expected: set[bytes] = set()  # returns of tasks this process submitted
        self.requested: set[bytes] = set()  # asked of the node manager, answer pending
        self.released_pins: list[bytes] = []  # pins to hand back on the next flush
        self.local_refs: dict[bytes, int] = {}  # maintained by the I/O thread only
        self.closed_reason: str | None = None

    def _wanted(self, object_id: bytes) -> bool:
        return object_id in self.local_refs or bool(self.getters.get(object_id))

    # -- called by the I/O thread ---------------------------------------------------------

    def arrived(self, values: list) -> None:
        with self.cond:
            wake = False
            for value in values:
                object_id = value.object_id
                self.expected.discard(object_id)
                self.requested.discard(object_id)
                if is_delivery(value):
                    self._take_pin(value)
                elif is_copy(value):
                    if self.getters.get(object_id):
                        self.values[object_id] = value
                    elif object_id in self.local_refs and object_id not in self.values:
                        self.values[object_id] = _marker(value)  # ready; a later get asks again
                elif self._wanted(object_id):
                    self.values[object_id] = value
                watchers = self.waiters.get(object_id)
                if watchers:
                    usable = self._usable(object_id)
                    for waiter in watchers:
                        if usable or not waiter.usable_only:
                            waiter.missing -= 1
                            wake = wake or waiter.missing <= 0
                        else:
                            waiter.rescan = wake = True  # a marker: the getter asks for a location
                    del self.waiters[object_id]
            if wake:
                self.cond.notify_all()

    def _take_pin(self, value: ObjectValue) -> None:
        object_id = value.object_id
        current = self.locations.get(object_id)
        if (current is not None and not current.give_back) or not self._wanted(object_id):
            self.released_pins.append(object_id)  # a duplicate, or nobody here wants it
        else:
            # A location being given back stays pinned for the arrays still on it.
            self.locations[object_id] = PinnedLocation(value)
        if object_id not in self.values and self._wanted(object_id):
            self.values[object_id] = _marker(value)

    def revoke(self, object_ids: list) -> list:
        """The node manager wants these pins back (to spill the objects).

        Returns the ids whose pins stay for now (arrays, or a get in progress, use them), so
        that the node manager need not wait for them; each goes back when its last view does.
        """
        kept = []
        with self.cond:
            for object_id in object_ids:
                location = self.locations.get(object_id)
                if location is None:
                    if object_id not in self.released_pins:
                        kept.append(object_id)  # a pin this process reads without caching it
                    continue
                if location.views:
                    location.give_back = True
                    kept.append(object_id)
                else:
                    del self.locations[object_id]
                    self.released_pins.append(object_id)
        return kept

    def apply_ref_events(self, events: list) -> tuple[dict, dict]:
        """Fold +1/-1 events into local counts.

        Returns (increments, decrements) for the node manager, deliberately not netted: a ref
        created and dropped between two flushes may be used by a message sent in between (a
        put sealed, then a task submitted with it), so the increment must reach the node
        manager before those messages and the decrement after them.
        """
        increments: dict[bytes, int] = {}
        decrements: dict[bytes, int] = {}
        evicted = []
        refs = self.local_refs
        for object_id, step in events:
            if step > 0:
                increments[object_id] = increments.get(object_id, 0) + step
            else:
                decrements[object_id] = decrements.get(object_id, 0) + step
            count = refs.get(object_id, 0) + step
            if count > 0:
                refs[object_id] = count
            else:
                refs.pop(object_id, None)
                evicted.append(object_id)
        if evicted:
            with self.cond:
                for object_id in evicted:
                    if object_id in refs or self.getters.get(object_id):
                        continue
                    self.values.pop(object_id, None)
                    self.expected.discard(object_id)
                    location = self.locations.get(object_id)
                    if location is not None:
                        if location.views:
                            location.give_back = True
                        else:
                            del self.locations[object_id]
                            self.released_pins.append(object_id)
        return increments, decrements

    def take_released_pins(self) -> list:
        with self.cond:
            pins, self.released_pins = self.released_pins, []
        return pins

    def close(self, reason: str) -> None:
        with self.cond:
            self.closed_reason = reason
            self.cond.notify_all()

    # -- called by user threads -----------------------------------------------------------

    def put_local(self, value: ObjectValue, pinned: bool = False) -> None:
        """Record a value this process stored; `pinned` when the node manager pins it for us."""
        with self.cond:
            if pinned:
                self.locations[value.object_id] = PinnedLocation(value)
                self.values[value.object_id] = _marker(value)
            else:
                self.values[value.object_id] = value

    def expect(self, object_ids) -> None:
        with self.cond:
            self.expected.update(object_ids)

    def view_released(self, location: PinnedLocation) -> None:
        """An array on a pinned location is gone (any thread, maybe the garbage collector)."""
        object_id = location.value.object_id
        with self.cond:
            location.views -= 1
            if location.views > 0:
                return
            current = self.locations.get(object_id) is location
            if current and not location.give_back and object_id in self.local_refs:
                return  # stays cached for the next get
            if current:
                del self.locations[object_id]
                if object_id not in self.local_refs and not self.getters.get(object_id):
                    self.values.pop(object_id, None)
            self.released_pins.append(object_id)

    def _usable(self, object_id: bytes) -> bool:
        value = self.values.get(object_id)
        if value is not None and value.data is not None:
            return True
        location = self.locations.get(object_id)
        return location is not None and not location.give_back

    def _unwatch(self, waiter: _Waiter) -> None:
        for object_id in waiter.watching:
            watchers = self.waiters.get(object_id)
            if watchers is not None:
                try:
                    watchers.remove(waiter)
                except ValueError:
                    pass
                if not watchers:
                    del self.waiters[object_id]
        waiter.watching = ()

    def _wait_on(self, waiter: _Waiter, deadline: float | None) -> bool:
        """Sleep until the waiter is satisfied or asked to rescan; False at the deadline."""
        while waiter.missing > 0 and not waiter.rescan:
            if self.closed_reason is not None:
                raise RuntimeError(self.closed_reason)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self.cond.wait(remaining)
        return True

    def _send_requests(self, request, object_ids: list) -> None:
        # Sending takes the client's send lock, which is taken before this condition
        # elsewhere: never hold the condition while sending.
        self.cond.release()
        try:
            request(object_ids)
        finally:
            self.cond.acquire()

    def collect(self, object_ids: list, timeout_s: float | None, request, on_block) -> list | None:
        """Wait until every id is usable; returns inline ObjectValues or PinnedLocations.

        Values come in input order up to and including the first error (the get raises
        there; nothing after it is held). Each returned PinnedLocation has had its view count
        raised once per place it appears: the caller must call `view_released(location)` that
        often when the memory is no longer used. `request(ids)` asks the node manager for
        values; `on_block(bool)` is told when this thread starts and stops waiting. Returns
        None on timeout. Waiting costs O(len(object_ids)) in all: arrivals count down the
        waiter instead of waking it to rescan every id.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        unique = list(dict.fromkeys(object_ids))
        blocked = False
        cond = self.cond
        waiter = _Waiter(usable_only=True)
        held: dict = {}  # object id -> its inline value, or a location this get holds a view on
        result = None
        try:
            with cond:
                for object_id in unique:
                    self.getters[object_id] = self.getters.get(object_id, 0) + 1
                pending = unique
                while True:
                    if self.closed_reason is not None:
                        raise RuntimeError(self.closed_reason)
                    self._unwatch(waiter)
                    pending = [i for i in pending if not self._hold(i, held)]
                    if not pending:
                        break
                    to_request = []
                    for object_id in pending:
                        if object_id in self.requested:
                            continue
                        if object_id not in self.values and object_id in self.expected:
                            continue  # our own task's result is pushed to us when ready
                        self.requested.add(object_id)
                        to_request.append(object_id)
                    waiter.watch(self.waiters, pending)
                    if to_request:
                        self._send_requests(request, to_request)
                        continue
                    if not blocked:
                        blocked = True
                        cond.release()
                        try:
                            on_block(True)
                        finally:
                            cond.acquire()
                        continue
                    if not self._wait_on(waiter, deadline):
                        return None
                    waiter.rescan = False
                result = self._hand_over(object_ids, held)
                return result
        finally:
            with cond:
                self._unwatch(waiter)
                if result is None:
                    for item in held.values():
                        if type(item) is PinnedLocation:
                            self.view_released(item)
                for object_id in unique:
                    left = self.getters.get(object_id, 0) - 1
                    if left > 0:
                        self.getters[object_id] = left
                        continue
                    self.getters.pop(object_id, None)
                    value = self.values.get(object_id)
                    if value is not None and is_copy(value):
                        if object_id in self.local_refs:
                            self.values[object_id] = _marker(value)
                        else:
                            del self.values[object_id]
                    if object_id not in self.local_refs:
                        # The marker goes with the location; a location with live views
                        # stays usable until view_released drops both.
                        location = self.locations.get(object_id)
                        if location is None:
                            self.values.pop(object_id, None)
                        elif location.views <= 0:
                            del self.locations[object_id]
                            self.values.pop(object_id, None)
                            self.released_pins.append(object_id)
            if blocked:
                on_block(False)

    def _hold(self, object_id: bytes, held: dict) -> bool:
        """Take what a get needs of one object, if it is here: its value or a view on its location."""
        if object_id in held:
            return True
        value = self.values.get(object_id)
        if value is not None and value.data is not None:
            held[object_id] = value
            return True
        location = self.locations.get(object_id)
        if location is None or location.give_back:
            return False
        location.views += 1  # asked back from now on, the pin stays until the get's values go
        held[object_id] = location
        return True

    def _hand_over(self, object_ids: list, held: dict) -> list:
        """The values in input order up to the first error; one view per returned occurrence."""
        returned = []
        uses: dict[bytes, int] = {}
        for object_id in object_ids:
            item = held[object_id]
            returned.append(item)
            uses[object_id] = uses.get(object_id, 0) + 1
            if (item.value if type(item) is PinnedLocation else item).is_error:
                break
        for object_id, item in held.items():
            if type(item) is PinnedLocation:
                count = uses.get(object_id, 0)
                if count:
                    item.views += count - 1
                else:
                    self.view_released(item)
        return returned

    def wait_ready(self, object_ids: list, num_returns: int, timeout_s: float | None, request, on_block) -> list:
        """Ids (in input order) that are ready once `num_returns` are, or at the timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        blocked = False
        waiter = _Waiter(usable_only=False)
        try:
            with self.cond:
                while True:
                    if self.closed_reason is not None:
                        raise RuntimeError(self.closed_reason)
                    self._unwatch(waiter)
                    values = self.values
                    not_ready = [i for i in object_ids if i not in values]
                    if not not_ready:
                        return object_ids
                    if len(object_ids) - len(not_ready) >= num_returns:
                        return [i for i in object_ids if i in values]
                    to_request = [i for i in not_ready if i not in self.expected and i not in self.requested]
                    waiter.watch(self.waiters, not_ready, needed=num_returns - (len(object_ids) - len(not_ready)))
                    if to_request:
                        self.requested.update(to_request)
                        self._send_requests(request, to_request)
                        continue
                    if not blocked:
                        blocked = True
                        self.cond.release()
                        try:
                            on_block(True)
                        finally:
                            self.cond.acquire()
                        continue
                    if not self._wait_on(waiter, deadline):
                        return [i for i in object_ids if i in self.values]
                    waiter.rescan = False
        finally:
            with self.cond:
                self._unwatch(waiter)
            if blocked:
                on_block(False)


class _Waiter:
    """A thread in get/wait: counts down as the objects it watches arrive."""

    __slots__ = ("missing", "rescan", "usable_only", "watching")

    def __init__(self, usable_only: bool):
        self.missing = 0
        self.rescan = False
        self.usable_only = usable_only  # get needs values or locations; wait is fine with markers
        self.watching: tuple | list = ()

    def watch(self, waiters: dict, object_ids: list, needed: int | None = None) -> None:
        self.missing = len(object_ids) if needed is None else needed
        self.watching = object_ids
        for object_id in object_ids:
            waiters.setdefault(object_id, []).append(self)
