"""The node manager's object handlers: put, get, allocation, reference updates, frees.

A mixin of NodeManagerService (it uses the service's object directory, arena store, clients
and send queue). It decides what a client receives for an object: a pinned arena location,
a value inline, or (for a client on another machine) the bytes; and it parks allocations and
restores while readers are asked to hand pins back.
"""

from __future__ import annotations

import time

from . import protocol
from .local_objects import MARKER_OFFSET
from .node_host import NodeHost
from .object_directory import FreeActions
from .protocol import ObjectValue


class ObjectHandlers(NodeHost):
    def _deliverable(
        self, client_id: bytes, entry, park: bool = False, deadline: float | None = None
    ) -> ObjectValue | None:
        """The value to send to a client; arena objects are restored if spilled and pinned.

        When a spilled object cannot be restored because readers pin the whole arena, it is
        parked while pins asked back may still make room (`park`; retried as they come back,
        until `deadline`); otherwise the reader gets a copy of its bytes, read from disk.
        """
        value = entry.value
        if value.data is None and entry.object_id in self.remote_objects:
            self._fetch(entry.object_id, ("client", client_id))  # delivered when it arrives
            return None
        client = self.clients.get(client_id)
        if value.data is None and client is not None and client.remote:
            return self._inline_copy(entry)
        if value.data is None:
            if value.shm_offset < 0:
                try:
                    self._apply_frees(self.store.restore(self.objects, entry))
                except MemoryError:
                    if park and self._revoke_for(value.shm_size):
                        if deadline is None:
                            deadline = time.monotonic() + self.config.allocation_wait_s
                        self.parked_deliveries.append((client_id, entry.object_id, deadline))
                        return None
                    data = self.store.read_spilled(entry)
                    # shm_size marks a copy: the reader does not cache it (LocalObjects.is_copy).
                    return ObjectValue(value.object_id, data, -1, value.shm_size, value.is_error, value.contained)
                value = entry.value
            self.objects.pin(client_id, entry.object_id)
        return value

    def _inline_copy(self, entry) -> ObjectValue:
        """A remote client cannot map this node's memory: send the object's bytes."""
        value = entry.value
        if value.shm_offset >= 0:
            view = self.store.arena.writable_view(value.shm_offset, value.shm_size)
            data = bytes(view)
            view.release()
        else:
            data = self.store.read_spilled(entry)
        return ObjectValue(value.object_id, data, -1, 0, value.is_error, value.contained)

    def _release_delivered(self, client_id: bytes, values: list) -> None:
        ids = [v.object_id for v in values if v.data is None]
        if ids:
            self._apply_frees(self.objects.unpin(client_id, ids))

    def _on_put(self, client_id: bytes, message: protocol.PutObjects) -> None:
        for value in message.values:
            self.store.sealed(value)
            self._publish(value, None)
            client = self.clients.get(client_id)
            if (
                value.data is None
                and client is not None
                and not client.remote
                and self.objects.get(value.object_id) is not None
            ):
                self.objects.pin(client_id, value.object_id)  # the putter caches its location

    def _publish(self, value: ObjectValue, owner: bytes | None) -> None:
        """Seal a ready value, deliver it to subscribers and the owner, start waiting tasks."""
        subscribers, runnable, frees = self.objects.seal(value)
        self._apply_frees(frees)
        for task_id in runnable:
            waiting = self.tasks.get(task_id)
            if waiting is not None and waiting.state == "WAITING":
                self._make_ready(waiting)
            elif waiting is None:
                self.actors.creation_args_ready(task_id)
        entry = self.objects.get(value.object_id)
        if entry is None:
            return
        for client_id in subscribers:
            if client_id in self.clients:
                delivered = self._deliverable(client_id, entry)
                if delivered is not None:
                    self._send(client_id, protocol.ObjectsReady([delivered]))
            elif client_id in self.cluster.nodes:
                self._send_location(client_id, entry)
        if value.object_id in self.remote_objects:
            # Stored on another node: the owner learns it is ready, and pulls it here on get.
            if owner is not None and owner in self.clients and owner not in subscribers:
                marker = ObjectValue(
                    value.object_id, None, MARKER_OFFSET, value.shm_size, value.is_error, value.contained
                )
                self._send(owner, protocol.ObjectsReady([marker]))
            return
        if owner is not None and owner in self.clients and owner not in subscribers:
            # The owner learns the result is ready (arena values pinned for its cache).
            self._send(owner, protocol.ObjectsReady([self._deliverable(owner, entry)]))

    def _on_allocate(self, client_id: bytes, message: protocol.AllocateObject) -> None:
        offset, frees, error = self.store.allocate(client_id, message.size_bytes, self.objects)
        self._apply_frees(frees)
        if offset < 0 and error is None:
            # Full of objects pinned by readers' caches: ask for pins back, retry on release.
            self._revoke_for(message.size_bytes)
            deadline = time.monotonic() + self.config.allocation_wait_s
            self.parked.append((client_id, message.request_id, message.size_bytes, deadline))
            return
        self._send(client_id, protocol.AllocateObjectReply(message.request_id, offset, error))

    def _revoke_for(self, size_bytes: int) -> bool:
        """Ask readers for pins back until everything parked, and `size_bytes` more, could fit;
        False if it cannot.

        The need is counted for all parked allocations and restores together: pins already
        asked back (`revoking`) count once, for whichever parked request gets their room first,
        so a second request parked behind the first asks for pins of its own. Pins a reader
        said it keeps (RevokePinsReply: arrays use them) are not counted.
        """
        wanted = size_bytes + self._parked_bytes() - self.store.allocator.free_bytes
        by_client: dict[bytes, list] = {}
        for entry in sorted(
            (
                e
                for e in self.objects.entries.values()
                if e.in_arena and e.pin_total and e.object_id not in self.pins_kept
            ),
            key=lambda e: e.last_access,
        ):
            if wanted <= 0:
                break
            assert entry.value is not None  # in_arena
            wanted -= entry.value.shm_size
            if entry.object_id in self.revoking:
                continue
            self.revoking.add(entry.object_id)
            for pinner in entry.pins:
                by_client.setdefault(pinner, []).append(entry.object_id)
        for pinner, object_ids in by_client.items():
            self._send(pinner, protocol.RevokePins(object_ids))
        return wanted <= 0

    def _parked_bytes(self) -> int:
        """Arena room the parked allocations and restores wait for."""
        total = sum(size_bytes for _, _, size_bytes, _ in self.parked)
        for _, object_id, _ in self.parked_deliveries:
            entry = self.objects.get(object_id)
            if entry is not None and entry.value is not None:
                total += entry.value.shm_size
        return total

    def _on_revoke_pins_reply(self, client_id: bytes, message: protocol.RevokePinsReply) -> None:
        """A reader keeps these pins for now: what was parked on them need not wait."""
        if not (self.parked or self.parked_deliveries):
            return
        self.pins_kept.update(message.kept)
        self.revoking.difference_update(message.kept)
        self._retry_parked(time.monotonic())

    def _retry_parked(self, now: float) -> None:
        deliveries, self.parked_deliveries = self.parked_deliveries, []
        for client_id, object_id, deadline in deliveries:
            entry = self.objects.get(object_id)
            if client_id not in self.clients or entry is None:
                continue
            value = self._deliverable(client_id, entry, park=now < deadline, deadline=deadline)
            if value is not None:
                self._send(client_id, protocol.ObjectsReady([value]))
        parked, self.parked = self.parked, []
        for client_id, request_id, size_bytes, deadline in parked:
            if client_id not in self.clients:
                continue
            offset, frees, error = self.store.allocate(client_id, size_bytes, self.objects)
            self._apply_frees(frees)
            if offset >= 0 or error is not None:
                self._send(client_id, protocol.AllocateObjectReply(request_id, offset, error))
            elif now >= deadline:
                self._send(client_id, protocol.AllocateObjectReply(request_id, -1, self.store.full_message(size_bytes)))
            else:
                self.parked.append((client_id, request_id, size_bytes, deadline))
        if not self.parked and not self.parked_deliveries:
            self.revoking.clear()
            self.pins_kept.clear()
        else:
            # What came back went to the first in line (or to objects stored meanwhile):
            # those still waiting ask for more pins back.
            self._revoke_for(0)

    def _on_get(self, client_id: bytes, message: protocol.GetObjects) -> None:
        ready = []
        pending = []
        for object_id in message.object_ids:
            if self.objects.subscribe(client_id, object_id):
                value = self._deliverable(client_id, self.objects.get(object_id), park=True)
                if value is not None:
                    ready.append(value)
            else:
                pending.append(object_id)
        if pending and len(self.cluster.nodes) > 1:
            self._watch_foreign(pending)
        if ready:
            self._send(client_id, protocol.ObjectsReady(ready))

    def _on_update_references(self, client_id: bytes, message: protocol.UpdateReferences) -> None:
        if message.deltas:
            self._apply_ref_deltas(client_id, message.deltas)
        if message.released_pins:
            self.pins_kept.difference_update(message.released_pins)
            # Handed back: if it is pinned again later, it is asked back again.
            self.revoking.difference_update(message.released_pins)
            self._apply_frees(self.objects.unpin(client_id, message.released_pins))
            if self.parked or self.parked_deliveries:
                self._retry_parked(time.monotonic())
        if message.aborted_offsets:
            self.store.abort(client_id, message.aborted_offsets)

    def _apply_ref_deltas(self, holder: bytes, deltas: dict) -> None:
        """Reference count changes of a client (or, for borrows, of another node): +n / -n."""
        self.objects.add_refs(holder, {k: v for k, v in deltas.items() if v > 0})
        self._apply_frees(self.objects.remove_refs(holder, {k: -v for k, v in deltas.items() if v < 0}))

    def _apply_frees(self, actions: FreeActions) -> None:
        if actions.arena_offsets or actions.spill_paths:
            self.store.free_offsets(actions.arena_offsets)
            self.store.delete_spilled(actions.spill_paths)
        if actions.freed_ids:
            self.actors.handles_released(actions.freed_ids)
            if len(self.cluster.nodes) > 1:
                self._objects_freed(actions.freed_ids)
