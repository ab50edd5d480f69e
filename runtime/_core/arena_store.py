"""The node manager's side of the object store: arena allocation, spilling and restoring.

Combines the pure `ArenaAllocator` with the `SharedArena` mapping and a `SpillDirectory`.
When an allocation does not fit, objects that no reader has mapped are written to disk
(least recently used first) and their arena blocks freed; a spilled object is read back
into the arena when someone asks for it. Objects that are mapped are never moved.
"""

from __future__ import annotations

import logging

from .arena_allocator import ArenaAllocator
from .object_directory import FreeActions, ObjectDirectory, ObjectEntry
from .protocol import ObjectValue
from .shared_arena import SharedArena, SpillDirectory

logger = logging.getLogger(__name__)

ALIGNMENT = 64


class ArenaStore:
    def __init__(self, capacity_bytes: int, spill_path: str):
        capacity_bytes = max(ALIGNMENT, capacity_bytes - capacity_bytes % ALIGNMENT)
        self.arena = SharedArena.create(capacity_bytes)
        self.allocator = ArenaAllocator(capacity_bytes, ALIGNMENT)
        self.spill_path = spill_path
        self._spill: SpillDirectory | None = None
        self.unsealed: dict[int, bytes] = {}  # offset -> client that allocated it
        self.spilled_bytes = 0

    @property
    def capacity_bytes(self) -> int:
        return self.allocator.capacity_bytes

    @property
    def used_bytes(self) -> int:
        return self.allocator.used_bytes

    def _spill_dir(self) -> SpillDirectory:
        if self._spill is None:
            self._spill = SpillDirectory(self.spill_path)
        return self._spill

    def allocate(
        self, client_id: bytes, size_bytes: int, objects: ObjectDirectory
    ) -> tuple[int, FreeActions, str | None]:
        """Returns (offset or -1, frees to apply, error message); error None with -1: full."""
        if size_bytes > self.capacity_bytes:
            return (
                -1,
                FreeActions(),
                (
                    f"object of {size_bytes} bytes is larger than the object store "
                    f"({self.capacity_bytes} bytes); start shoal with a larger object_store_memory"
                ),
            )
        offset = self._allocate_spilling(size_bytes, objects)
        if offset is None:
            return -1, FreeActions(), None
        self.unsealed[offset] = client_id
        return offset, FreeActions(), None

    def _allocate_spilling(self, size_bytes: int, objects: ObjectDirectory, keep: bytes | None = None) -> int | None:
        offset = self.allocator.allocate(size_bytes)
        if offset is not None:
            return offset
        for entry in objects.spill_candidates():
            if entry.object_id == keep:
                continue
            self._spill_one(entry, objects)
            offset = self.allocator.allocate(size_bytes)
            if offset is not None:
                return offset
        return None

    def full_message(self, size_bytes: int) -> str:
        return (
            f"the object store is full: {size_bytes} bytes requested, {self.allocator.free_bytes} "
            f"free of {self.capacity_bytes}, and every stored object is in use by a reader, so "
            "none could be spilled"
        )

    def _spill_one(self, entry: ObjectEntry, objects: ObjectDirectory) -> None:
        value = entry.value
        assert value is not None  # spill candidates are in the arena
        view = self.arena.writable_view(value.shm_offset, value.shm_size)
        path = self._spill_dir().spill(entry.object_id.hex(), view)
        view.release()
        self.spilled_bytes += value.shm_size
        self.allocator.free(objects.mark_spilled(entry, path))
        logger.info("spilled %s (%d bytes) to %s", entry.object_id.hex(), value.shm_size, path)

    def restore(self, objects: ObjectDirectory, entry: ObjectEntry) -> FreeActions:
        """Bring a spilled object back into the arena."""
        value = entry.value
        assert value is not None and entry.spill_path is not None  # a spilled object is ready and has its file
        offset = self._allocate_spilling(value.shm_size, objects, keep=entry.object_id)
        if offset is None:
            raise MemoryError(f"cannot restore spilled object {entry.object_id.hex()}: the object store is full")
        view = self.arena.writable_view(offset, value.shm_size)
        self._spill_dir().restore_into(entry.spill_path, view)
        view.release()
        self._spill_dir().delete(entry.spill_path)
        self.spilled_bytes -= value.shm_size
        entry.spill_path = None
        objects.mark_restored(entry, offset)
        return FreeActions()

    def read_spilled(self, entry: ObjectEntry) -> bytes:
        """A spilled object's bytes, for a reader when the arena has no room to restore it."""
        assert entry.spill_path is not None  # callers read only spilled objects
        with open(entry.spill_path, "rb") as handle:
            return handle.read()

    def sealed(self, value: ObjectValue) -> None:
        if value.data is None and value.shm_offset >= 0:
            self.unsealed.pop(value.shm_offset, None)

    # A block is freed exactly once: while `unsealed` lists it, only its client gives it back
    # (abort, or leaving); once sealed, only the object directory does (free_offsets).

    def abort(self, client_id: bytes, offsets: list) -> None:
        """Give back blocks `client_id` allocated and never sealed; others' blocks are left alone."""
        for offset in offsets:
            if self.unsealed.get(offset) == client_id:
                del self.unsealed[offset]
                self._free(offset)

    def abort_allocations_of(self, client_id: bytes) -> None:
        self.abort(client_id, [o for o, c in self.unsealed.items() if c == client_id])

    def free_offsets(self, offsets: list) -> None:
        """Free sealed objects' blocks. A block still listed as a client's is refused: its client frees it."""
        for offset in offsets:
            client_id = self.unsealed.get(offset)
            if client_id is not None:
                logger.error(
                    "arena offset %d freed as an object while still unsealed by client %s: not freed now, "
                    "so that the client's abort or exit does not free it a second time",
                    offset,
                    client_id.hex(),
                )
                continue
            self._free(offset)

    def _free(self, offset: int) -> None:
        try:
            self.allocator.free(offset)
        except KeyError:
            logger.error("double free of arena offset %d refused: it holds no live block", offset)

    def delete_spilled(self, paths: list) -> None:
        for path in paths:
            if self._spill is not None:
                self._spill.delete(path)

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
        self.arena.close()
