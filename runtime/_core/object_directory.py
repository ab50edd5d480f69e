"""Pure object state of one node: readiness, locations, reference counts, pins, waiters.

Reference counts are kept per client process so that a dead client's references can be
dropped. An object is freed when no client references it, no queued or running task uses it
as an argument, no live object contains it, and no reader has its arena memory mapped
(`pins`). Methods return what the caller must do (deliver values, free arena blocks, start
tasks whose arguments became ready). No sockets, no threads, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .protocol import ObjectValue


@dataclass
class ObjectEntry:
    object_id: bytes
    value: ObjectValue | None = None  # None while pending
    refs: dict = field(default_factory=dict)  # client id -> count
    ref_total: int = 0
    holds: int = 0  # pending task arguments and containing objects
    pins: dict = field(default_factory=dict)  # client id -> delivered arena locations in use
    pin_total: int = 0
    subscribers: set = field(default_factory=set)
    waiting_tasks: list = field(default_factory=list)
    spill_path: str | None = None
    last_access: int = 0

    @property
    def ready(self) -> bool:
        return self.value is not None

    @property
    def in_arena(self) -> bool:
        return self.value is not None and self.value.data is None and self.value.shm_offset >= 0


@dataclass
class FreeActions:
    arena_offsets: list = field(default_factory=list)
    spill_paths: list = field(default_factory=list)
    freed_ids: list = field(default_factory=list)

    def extend(self, other: FreeActions) -> None:
        self.arena_offsets += other.arena_offsets
        self.spill_paths += other.spill_paths
        self.freed_ids += other.freed_ids


class ObjectDirectory:
    def __init__(self) -> None:
        self.entries: dict[bytes, ObjectEntry] = {}
        self.task_missing: dict[bytes, int] = {}  # task id -> number of args not yet ready
        self.arena_bytes = 0
        self._clock = 0
        self.on_new_entry: Callable[[bytes], None] | None = (
            None  # called with the id of each new entry (cross-node borrowing)
        )

    def _entry(self, object_id: bytes) -> ObjectEntry:
        entry = self.entries.get(object_id)
        if entry is None:
            entry = self.entries[object_id] = ObjectEntry(object_id)
            if self.on_new_entry is not None:
                self.on_new_entry(object_id)
        return entry

    def get(self, object_id: bytes) -> ObjectEntry | None:
        return self.entries.get(object_id)

    # -- references -----------------------------------------------------------------------

    def add_refs(self, client_id: bytes, deltas: dict) -> None:
        for object_id, count in deltas.items():
            if count <= 0:
                continue
            entry = self._entry(object_id)
            entry.refs[client_id] = entry.refs.get(client_id, 0) + count
            entry.ref_total += count

    def remove_refs(self, client_id: bytes, deltas: dict) -> FreeActions:
        actions = FreeActions()
        for object_id, count in deltas.items():
            entry = self.entries.get(object_id)
            if entry is None or count <= 0:
                continue
            held = entry.refs.get(client_id, 0)
            count = min(count, held)
            if held - count:
                entry.refs[client_id] = held - count
            else:
                entry.refs.pop(client_id, None)
            entry.ref_total -= count
            self._maybe_free(entry, actions)
        return actions

    def hold(self, object_ids, count: int = 1) -> None:
        """Keep objects alive for a task argument or a containing object."""
        for object_id in object_ids:
            self._entry(object_id).holds += count

    def unhold(self, object_ids) -> FreeActions:
        actions = FreeActions()
        for object_id in object_ids:
            entry = self.entries.get(object_id)
            if entry is not None:
                entry.holds -= 1
                self._maybe_free(entry, actions)
        return actions

    def _maybe_free(self, entry: ObjectEntry, actions: FreeActions) -> None:
        if entry.ref_total > 0 or entry.holds > 0 or entry.pin_total > 0 or entry.subscribers:
            return
        if entry.waiting_tasks:
            return
        del self.entries[entry.object_id]
        actions.freed_ids.append(entry.object_id)
        value = entry.value
        if value is None:
            return
        if entry.in_arena:
            actions.arena_offsets.append(value.shm_offset)
            self.arena_bytes -= value.shm_size
        if entry.spill_path:
            actions.spill_paths.append(entry.spill_path)
        if value.contained:
            actions.extend(self.unhold(value.contained))

    # -- readiness ------------------------------------------------------------------------

    def seal(self, value: ObjectValue) -> tuple[list[bytes], list[bytes], FreeActions]:
        """Record a ready value. Returns (subscribers to deliver to, tasks now runnable, frees)."""
        entry = self._entry(value.object_id)
        actions = FreeActions()
        if entry.ready:
            # A retried task produced the value again: keep the first, drop the duplicate.
            if value.data is None and value.shm_offset >= 0:
                actions.arena_offsets.append(value.shm_offset)
            return [], [], actions
        entry.value = value
        self._clock += 1
        entry.last_access = self._clock
        if value.data is None and value.shm_offset >= 0:
            self.arena_bytes += value.shm_size
        if value.contained:
            self.hold(value.contained)
        subscribers = list(entry.subscribers)
        entry.subscribers.clear()
        runnable = []
        for task_id in entry.waiting_tasks:
            missing = self.task_missing.get(task_id)
            if missing is None:
                continue
            if missing <= 1:
                del self.task_missing[task_id]
                runnable.append(task_id)
            else:
                self.task_missing[task_id] = missing - 1
        entry.waiting_tasks.clear()
        self._maybe_free(entry, actions)
        return subscribers, runnable, actions

    def subscribe(self, client_id: bytes, object_id: bytes) -> bool:
        """True if the object is ready now; otherwise the client is told when it is."""
        entry = self._entry(object_id)
        if entry.ready:
            return True
        entry.subscribers.add(client_id)
        return False

    def wait_for_args(self, task_id: bytes, object_ids) -> bool:
        """Register a task's ref arguments; True if all are ready already."""
        missing = 0
        for object_id in set(object_ids):
            entry = self._entry(object_id)
            if not entry.ready:
                entry.waiting_tasks.append(task_id)
                missing += 1
        if missing:
            self.task_missing[task_id] = missing
            return False
        return True

    def add_waiting_task(self, task_id: bytes, object_id: bytes) -> None:
        """A task's argument went back to pending (its only copy was lost): wait for it again."""
        entry = self._entry(object_id)
        if entry.ready or task_id in entry.waiting_tasks:
            return
        entry.waiting_tasks.append(task_id)
        self.task_missing[task_id] = self.task_missing.get(task_id, 0) + 1

    def unseal(self, object_id: bytes) -> FreeActions:
        """Forget a value whose only copy was lost; the entry is pending again."""
        actions = FreeActions()
        entry = self.entries.get(object_id)
        if entry is None or entry.value is None:
            return actions
        value, entry.value = entry.value, None
        if value.data is None and value.shm_offset >= 0:
            actions.arena_offsets.append(value.shm_offset)
            self.arena_bytes -= value.shm_size
        if entry.spill_path:
            actions.spill_paths.append(entry.spill_path)
            entry.spill_path = None
        if value.contained:
            actions.extend(self.unhold(value.contained))
        return actions

    def forget_task(self, task_id: bytes) -> None:
        self.task_missing.pop(task_id, None)

    # -- pins -----------------------------------------------------------------------------

    def pin(self, client_id: bytes, object_id: bytes) -> None:
        entry = self.entries[object_id]
        entry.pins[client_id] = entry.pins.get(client_id, 0) + 1
        entry.pin_total += 1
        self._clock += 1
        entry.last_access = self._clock

    def unpin(self, client_id: bytes, object_ids) -> FreeActions:
        actions = FreeActions()
        for object_id in object_ids:
            entry = self.entries.get(object_id)
            if entry is None:
                continue
            held = entry.pins.get(client_id, 0)
            if held <= 0:
                continue
            if held > 1:
                entry.pins[client_id] = held - 1
            else:
                del entry.pins[client_id]
            entry.pin_total -= 1
            self._maybe_free(entry, actions)
        return actions

    # -- clients --------------------------------------------------------------------------

    def client_gone(self, client_id: bytes) -> FreeActions:
        actions = FreeActions()
        for entry in list(self.entries.values()):
            entry.subscribers.discard(client_id)
            refs = entry.refs.pop(client_id, 0)
            entry.ref_total -= refs
            pins = entry.pins.pop(client_id, 0)
            entry.pin_total -= pins
            if entry.object_id in self.entries:
                self._maybe_free(entry, actions)
        return actions

    # -- spilling -------------------------------------------------------------------------

    def spill_candidates(self) -> list[ObjectEntry]:
        """Arena objects nobody has mapped, least recently used first."""
        candidates = [e for e in self.entries.values() if e.in_arena and e.pin_total == 0]
        candidates.sort(key=lambda e: e.last_access)
        return candidates

    def mark_spilled(self, entry: ObjectEntry, path: str) -> int:
        """The object now lives only in `path`; returns the arena offset to free."""
        value = entry.value
        assert value is not None  # only a ready arena object is spilled
        entry.spill_path = path
        entry.value = ObjectValue(value.object_id, None, -1, value.shm_size, value.is_error, value.contained)
        self.arena_bytes -= value.shm_size
        return value.shm_offset

    def mark_restored(self, entry: ObjectEntry, offset: int) -> None:
        value = entry.value
        assert value is not None  # a spilled object is ready
        entry.value = ObjectValue(value.object_id, None, offset, value.shm_size, value.is_error, value.contained)
        self.arena_bytes += value.shm_size
