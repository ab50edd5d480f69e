"""Unit tests for the arena store: every block goes back to the allocator exactly once.

Real arena (a memfd mapped in the test process), real object directory and spill directory; no
processes. A block a client allocated is either sealed (then the object directory owns it) or
still the client's (then it goes back when the client aborts it or leaves); freeing it as an
object while it is still listed as the client's would free it a second time when the client
leaves, possibly after it was handed to another object.
"""

from __future__ import annotations

import logging

import pytest
from shoal._core.arena_store import ALIGNMENT, ArenaStore
from shoal._core.object_directory import ObjectDirectory
from shoal._core.protocol import ObjectValue

WORKER = b"w" * 16
DRIVER = b"d" * 16
BLOCK = ALIGNMENT


@pytest.fixture
def store(tmp_path):
    store = ArenaStore(3 * BLOCK, str(tmp_path / "spill"))
    yield store
    store.close()


def _put(store: ArenaStore, objects: ObjectDirectory, name: bytes) -> bytes:
    """Allocate, write and seal one object of one block filled with its name's first byte."""
    object_id = name.ljust(20, b".")
    offset, _, error = store.allocate(DRIVER, BLOCK, objects)
    assert offset >= 0 and error is None
    _write(store, offset, name[:1] * BLOCK)
    value = ObjectValue(object_id, None, offset, BLOCK)
    store.sealed(value)
    objects.add_refs(DRIVER, {object_id: 1})
    objects.seal(value)
    return object_id


def _write(store: ArenaStore, offset: int, data: bytes) -> None:
    view = store.arena.writable_view(offset, len(data))
    view[:] = data
    view.release()


def _read(store: ArenaStore, objects: ObjectDirectory, object_id: bytes) -> bytes:
    value = objects.get(object_id).value
    view = store.arena.writable_view(value.shm_offset, value.shm_size)
    data = bytes(view)
    view.release()
    return data


def _give_back_by_abort(store: ArenaStore, offset: int) -> None:
    store.abort(WORKER, [offset])  # what the node manager does with a result nobody wants


def _give_back_as_an_object(store: ArenaStore, offset: int) -> None:
    store.free_offsets([offset])  # the mistake: freed as if sealed, still listed as the worker's


@pytest.mark.parametrize("give_back", [_give_back_by_abort, _give_back_as_an_object])
def test_a_worker_block_given_back_is_not_freed_again_when_the_worker_leaves(store, give_back, caplog):
    objects = ObjectDirectory()
    unwanted, _, _ = store.allocate(WORKER, BLOCK, objects)  # a result that will be discarded
    first = _put(store, objects, b"A")
    _put(store, objects, b"B")
    # The arena is full: the next object spills the least recently used one (A) to disk.
    _put(store, objects, b"C")
    assert objects.get(first).value.shm_offset < 0

    with caplog.at_level(logging.ERROR, logger="shoal._core.arena_store"):
        give_back(store, unwanted)
    store.restore(objects, objects.get(first))  # A comes back into the arena, maybe where the block was
    store.abort_allocations_of(WORKER)  # the worker exits
    # Whatever is free now is handed out and written: none of it may be A's block.
    while (offset := store.allocator.allocate(BLOCK)) is not None:
        _write(store, offset, b"x" * BLOCK)

    assert _read(store, objects, first) == b"A" * BLOCK
    store.allocator.check_invariants()
    assert store.used_bytes == store.capacity_bytes
    if give_back is _give_back_as_an_object:
        assert any("still unsealed" in record.getMessage() for record in caplog.records), caplog.text


def test_a_block_is_freed_by_its_client_only(store):
    objects = ObjectDirectory()
    offset, _, _ = store.allocate(WORKER, BLOCK, objects)
    store.abort(DRIVER, [offset])  # not the driver's to give back
    assert store.allocator.num_blocks == 1
    store.abort(WORKER, [offset])
    store.abort(WORKER, [offset])  # given back already: nothing left to free
    store.abort_allocations_of(WORKER)
    assert store.allocator.num_blocks == 0 and store.used_bytes == 0
    store.allocator.check_invariants()


def test_freeing_a_block_twice_as_an_object_is_refused_loudly(store, caplog):
    objects = ObjectDirectory()
    object_id = _put(store, objects, b"A")
    offset = objects.get(object_id).value.shm_offset
    store.free_offsets([offset])
    with caplog.at_level(logging.ERROR, logger="shoal._core.arena_store"):
        store.free_offsets([offset])
    assert [record.levelno for record in caplog.records] == [logging.ERROR]
    assert f"offset {offset}" in caplog.records[0].getMessage()
    assert store.used_bytes == 0
    store.allocator.check_invariants()
