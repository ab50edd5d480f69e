"""A process's view of the objects it uses: cached small values, arena deliveries, waiters.

Shared between the user's threads (get, wait) and the client's I/O thread (arrivals), under
one condition variable. Arena locations are only ever used while pinned: each delivery from
the node manager carries one pin, which the reader hands back when the last array built on
that memory is gone. Locations are not cached, so unpinned objects can be spilled.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from .protocol import ObjectValue

MARKER_OFFSET = -2  # "ready, in the arena": ask the node manager for a pinned location


def is_inline(value: ObjectValue) -> bool:
    return value.data is not None


def is_delivery(value: ObjectValue) -> bool:
    return value.data is None and value.shm_offset >= 0


class LocalObjects:
    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.values: dict[bytes, ObjectValue] = {}  # inline values, errors, arena markers
        self.deliveries: dict[bytes, deque] = {}  # pinned arena locations not yet consumed
        self.needs: dict[bytes, int] = {}  # getters that will consume a delivery
        self.expected: set[bytes] = set()  # returns of tasks this process submitted
        self.requested: set[bytes] = set()  # subscribed at the node manager
        self.released_pins: list[bytes] = []  # pins to hand back on the next flush
        self.local_refs: dict[bytes, int] = {}  # maintained by the I/O thread only
        self.closed_reason: str | None = None

    # -- called by the I/O thread ---------------------------------------------------------

    def arrived(self, values: list) -> None:
        with self.cond:
            for value in values:
                object_id = value.object_id
                self.expected.discard(object_id)
                self.requested.discard(object_id)
                if is_delivery(value):
                    queue = self.deliveries.setdefault(object_id, deque())
                    if len(queue) < self.needs.get(object_id, 0):
                        queue.append(value)
                    else:
                        self.released_pins.append(object_id)
                        if not queue:
                            del self.deliveries[object_id]
                    if object_id not in self.values:
                        self.values[object_id] = ObjectValue(
                            object_id, None, MARKER_OFFSET, value.shm_size, value.is_error, value.contained
                        )
                elif object_id in self.local_refs or self.needs.get(object_id):
                    self.values[object_id] = value
            self.cond.notify_all()

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
                    if object_id in refs or self.needs.get(object_id):
                        continue
                    self.values.pop(object_id, None)
                    self.expected.discard(object_id)
                    queue = self.deliveries.pop(object_id, None)
                    if queue:
                        self.released_pins.extend(object_id for _ in queue)
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

    def put_local(self, value: ObjectValue) -> None:
        with self.cond:
            self.values[value.object_id] = value

    def expect(self, object_ids) -> None:
        with self.cond:
            self.expected.update(object_ids)

    def collect(self, object_ids: list, timeout_s: float | None, request, on_block) -> list | None:
        """Wait until every id is usable; returns ObjectValues (inline or pinned deliveries).

        `request(ids)` asks the node manager for values; `on_block(bool)` is told when this
        thread starts and stops waiting. Returns None on timeout.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        unique = list(dict.fromkeys(object_ids))
        registered: set[bytes] = set()
        blocked = False
        cond = self.cond
        try:
            with cond:
                while True:
                    if self.closed_reason is not None:
                        raise RuntimeError(self.closed_reason)
                    to_request = []
                    pending = False
                    for object_id in unique:
                        value = self.values.get(object_id)
                        if value is not None and value.data is not None:
                            continue
                        if object_id not in registered:
                            registered.add(object_id)
                            self.needs[object_id] = self.needs.get(object_id, 0) + 1
                        if value is None:
                            if object_id not in self.expected and object_id not in self.requested:
                                self.requested.add(object_id)
                                to_request.append(object_id)
                            pending = True
                        elif not self.deliveries.get(object_id):
                            # Shared with other getters: a delivery another thread took is
                            # asked for again once the outstanding request has been answered.
                            if object_id not in self.requested:
                                self.requested.add(object_id)
                                to_request.append(object_id)
                            pending = True
                    if to_request:
                        request(to_request)
                    if not pending:
                        break
                    if not blocked:
                        blocked = True
                        cond.release()
                        try:
                            on_block(True)
                        finally:
                            cond.acquire()
                        continue
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return None
                    cond.wait(remaining)
                result = {}
                for object_id in unique:
                    value = self.values[object_id]
                    if value.data is None:
                        value = self.deliveries[object_id].popleft()
                        if not self.deliveries[object_id]:
                            del self.deliveries[object_id]
                    result[object_id] = value
                return [result[object_id] for object_id in object_ids]
        finally:
            with cond:
                for object_id in registered:
                    left = self.needs.get(object_id, 0) - 1
                    if left > 0:
                        self.needs[object_id] = left
                    else:
                        self.needs.pop(object_id, None)
                        queue = self.deliveries.pop(object_id, None)
                        if queue:
                            self.released_pins.extend(object_id for _ in queue)
            if blocked:
                on_block(False)

    def wait_ready(self, object_ids: list, num_returns: int, timeout_s: float | None, request, on_block) -> list:
        """Ids (in input order) that are ready once `num_returns` are, or at the timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        blocked = False
        try:
            with self.cond:
                while True:
                    if self.closed_reason is not None:
                        raise RuntimeError(self.closed_reason)
                    ready = [i for i in object_ids if i in self.values]
                    if len(ready) >= num_returns:
                        return ready
                    to_request = [
                        i for i in object_ids if i not in self.values and i not in self.expected and i not in self.requested
                    ]
                    if to_request:
                        self.requested.update(to_request)
                        request(to_request)
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return ready
                    if not blocked:
                        blocked = True
                        self.cond.release()
                        try:
                            on_block(True)
                        finally:
                            self.cond.acquire()
                        continue
                    self.cond.wait(remaining)
        finally:
            if blocked:
                on_block(False)
