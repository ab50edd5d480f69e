"""Unit tests for the node's object directory: reference counts, holds, pins, readiness, frees."""

from __future__ import annotations

from shoal._core.object_directory import ObjectDirectory
from shoal._core.protocol import ObjectValue

A, B, C, D = (bytes([i]) * 20 for i in range(1, 5))
DRIVER = b"driver"
WORKER = b"worker"


def inline(object_id: bytes, contained=None) -> ObjectValue:
    return ObjectValue(object_id, b"data", contained=contained)


def arena(object_id: bytes, offset: int, size: int = 100, contained=None) -> ObjectValue:
    return ObjectValue(object_id, None, shm_offset=offset, shm_size=size, contained=contained)


def sealed(directory: ObjectDirectory, value: ObjectValue, client: bytes = DRIVER) -> ObjectValue:
    """Seal a value that `client` holds one reference to."""
    directory.add_refs(client, {value.object_id: 1})
    assert directory.seal(value)[2].freed_ids == []
    return value


# -- references -----------------------------------------------------------------------------


def test_refs_are_counted_per_client():
    directory = ObjectDirectory()
    sealed(directory, inline(A))
    directory.add_refs(WORKER, {A: 2})
    entry = directory.get(A)
    assert entry.refs == {DRIVER: 1, WORKER: 2}
    assert entry.ref_total == 3
    assert directory.remove_refs(DRIVER, {A: 1}).freed_ids == []
    assert directory.remove_refs(WORKER, {A: 1}).freed_ids == []
    assert directory.remove_refs(WORKER, {A: 1}).freed_ids == [A]
    assert directory.get(A) is None


def test_removing_more_than_a_client_holds_is_clamped_to_its_own_refs():
    directory = ObjectDirectory()
    sealed(directory, inline(A))
    directory.add_refs(WORKER, {A: 1})
    assert directory.remove_refs(WORKER, {A: 5}).freed_ids == []
    assert directory.get(A).refs == {DRIVER: 1}
    assert directory.remove_refs(b"stranger", {A: 1}).freed_ids == []
    assert directory.get(A).ref_total == 1


def test_non_positive_deltas_and_unknown_ids_are_ignored():
    directory = ObjectDirectory()
    directory.add_refs(DRIVER, {A: 0, B: -3})
    assert directory.get(A) is None and directory.get(B) is None
    assert directory.remove_refs(DRIVER, {C: 1}).freed_ids == []
    sealed(directory, inline(A))
    assert directory.remove_refs(DRIVER, {A: 0}).freed_ids == []


def test_increments_applied_before_decrements_keep_a_handed_over_object():
    # One update carries the driver's +1 (a new ref) and -1 (the old one dropped): the node
    # manager applies increments first, so the object survives the hand-over.
    directory = ObjectDirectory()
    sealed(directory, inline(A))
    directory.add_refs(DRIVER, {A: 1})
    assert directory.remove_refs(DRIVER, {A: 1}).freed_ids == []
    assert directory.get(A).ref_total == 1
    # Another client's +1 in the same batch, applied before the driver's -1, also keeps it.
    directory.add_refs(WORKER, {A: 1})
    assert directory.remove_refs(DRIVER, {A: 1}).freed_ids == []
    assert directory.get(A).refs == {WORKER: 1}


def test_pending_object_without_refs_is_forgotten():
    directory = ObjectDirectory()
    directory.add_refs(DRIVER, {A: 1})
    actions = directory.remove_refs(DRIVER, {A: 1})
    assert actions.freed_ids == [A] and actions.arena_offsets == []


# -- what keeps an object alive -------------------------------------------------------------


def test_freed_only_when_refs_holds_pins_and_waiters_are_all_gone():
    directory = ObjectDirectory()
    value = sealed(directory, arena(A, 4096, size=300))
    directory.hold([A])
    directory.pin(WORKER, A)
    directory.subscribe(WORKER, B)  # unrelated subscriber
    assert directory.arena_bytes == 300
    assert directory.remove_refs(DRIVER, {A: 1}).freed_ids == []
    assert directory.unhold([A]).freed_ids == []
    actions = directory.unpin(WORKER, [A])
    assert actions.freed_ids == [A]
    assert actions.arena_offsets == [value.shm_offset]
    assert directory.arena_bytes == 0
    assert directory.get(A) is None


def test_subscriber_keeps_a_pending_object():
    directory = ObjectDirectory()
    directory.add_refs(DRIVER, {A: 1})
    assert directory.subscribe(WORKER, A) is False
    assert directory.remove_refs(DRIVER, {A: 1}).freed_ids == []
    subscribers, _, actions = directory.seal(inline(A))
    assert subscribers == [WORKER]
    # Delivered and nothing else refers to it: freed right away.
    assert actions.freed_ids == [A]


def test_waiting_task_keeps_a_pending_argument():
    directory = ObjectDirectory()
    directory.add_refs(DRIVER, {A: 1})
    assert directory.wait_for_args(b"task", [A]) is False
    assert directory.remove_refs(DRIVER, {A: 1}).freed_ids == []
    assert directory.get(A) is not None


def test_multiple_holds_need_multiple_unholds():
    directory = ObjectDirectory()
    sealed(directory, inline(A))
    directory.hold([A], count=2)
    directory.remove_refs(DRIVER, {A: 1})
    assert directory.unhold([A]).freed_ids == []
    assert directory.unhold([A]).freed_ids == [A]
    assert directory.unhold([A]).freed_ids == []  # already gone: ignored


def test_pins_are_per_client_and_counted():
    directory = ObjectDirectory()
    sealed(directory, arena(A, 0))
    directory.pin(WORKER, A)
    directory.pin(WORKER, A)
    directory.pin(DRIVER, A)
    directory.remove_refs(DRIVER, {A: 1})
    assert directory.unpin(b"stranger", [A]).freed_ids == []
    assert directory.unpin(WORKER, [A, A]).freed_ids == []
    assert directory.get(A).pins == {DRIVER: 1}
    assert directory.unpin(DRIVER, [A]).arena_offsets == [0]
    assert directory.unpin(DRIVER, [A]).freed_ids == []


# -- readiness ------------------------------------------------------------------------------


def test_seal_returns_subscribers_once():
    directory = ObjectDirectory()
    directory.add_refs(DRIVER, {A: 1})
    assert directory.subscribe(DRIVER, A) is False
    assert directory.subscribe(WORKER, A) is False
    subscribers, runnable, actions = directory.seal(inline(A))
    assert sorted(subscribers) == [DRIVER, WORKER]
    assert runnable == [] and actions.freed_ids == []
    assert directory.subscribe(WORKER, A) is True
    assert directory.get(A).subscribers == set()


def test_task_runnable_only_after_all_args_sealed():
    directory = ObjectDirectory()
    directory.add_refs(DRIVER, {A: 1, B: 1})
    directory.hold([A, B])
    assert directory.wait_for_args(b"task", [A, B]) is False
    assert directory.seal(inline(A))[1] == []
    assert directory.seal(inline(B))[1] == [b"task"]
    assert directory.task_missing == {}


def test_same_arg_twice_is_counted_once():
    directory = ObjectDirectory()
    directory.add_refs(DRIVER, {A: 1})
    assert directory.wait_for_args(b"task", [A, A]) is False
    assert directory.task_missing == {b"task": 1}
    assert directory.get(A).waiting_tasks == [b"task"]
    assert directory.seal(inline(A))[1] == [b"task"]


def test_args_already_ready_need_no_wait():
    directory = ObjectDirectory()
    sealed(directory, inline(A))
    assert directory.wait_for_args(b"task", [A]) is True
    assert directory.wait_for_args(b"no-args", []) is True
    assert directory.task_missing == {}


def test_forgotten_task_is_not_made_runnable():
    directory = ObjectDirectory()
    directory.add_refs(DRIVER, {A: 1})
    directory.wait_for_args(b"cancelled", [A])
    directory.wait_for_args(b"live", [A])
    directory.forget_task(b"cancelled")
    assert directory.seal(inline(A))[1] == [b"live"]


def test_double_seal_keeps_first_and_frees_duplicate_arena_block():
    directory = ObjectDirectory()
    first = sealed(directory, arena(A, 4096, size=64))
    subscribers, runnable, actions = directory.seal(arena(A, 8192, size=64))
    assert (subscribers, runnable) == ([], [])
    assert actions.arena_offsets == [8192]
    assert actions.freed_ids == []
    assert directory.get(A).value == first
    assert directory.arena_bytes == 64
    # A duplicate inline value has no block to free.
    assert directory.seal(inline(A))[2].arena_offsets == []


def test_sealed_value_nobody_refers_to_is_freed_at_once():
    directory = ObjectDirectory()
    actions = directory.seal(arena(A, 128, size=10))[2]
    assert actions.freed_ids == [A]
    assert actions.arena_offsets == [128]
    assert directory.arena_bytes == 0


# -- contained refs -------------------------------------------------------------------------


def test_contained_refs_live_as_long_as_their_container():
    directory = ObjectDirectory()
    sealed(directory, inline(B))
    sealed(directory, arena(A, 0, contained=[B]))
    assert directory.get(B).holds == 1
    assert directory.remove_refs(DRIVER, {B: 1}).freed_ids == []
    actions = directory.remove_refs(DRIVER, {A: 1})
    assert actions.freed_ids == [A, B]
    assert actions.arena_offsets == [0]


def test_freeing_cascades_through_nested_containers():
    directory = ObjectDirectory()
    sealed(directory, arena(C, 512, size=10))
    sealed(directory, inline(B, contained=[C]))
    sealed(directory, inline(A, contained=[B]))
    directory.remove_refs(DRIVER, {B: 1, C: 1})
    actions = directory.remove_refs(DRIVER, {A: 1})
    assert actions.freed_ids == [A, B, C]
    assert actions.arena_offsets == [512]
    assert directory.entries == {}
    assert directory.arena_bytes == 0


def test_contained_ref_still_referenced_survives_its_container():
    directory = ObjectDirectory()
    sealed(directory, inline(B))
    sealed(directory, inline(A, contained=[B]))
    assert directory.remove_refs(DRIVER, {A: 1}).freed_ids == [A]
    assert directory.get(B).holds == 0
    assert directory.remove_refs(DRIVER, {B: 1}).freed_ids == [B]


# -- clients --------------------------------------------------------------------------------


def test_client_gone_drops_its_refs_pins_and_subscriptions():
    directory = ObjectDirectory()
    sealed(directory, arena(A, 64, size=10), client=WORKER)
    directory.pin(WORKER, A)
    sealed(directory, inline(B), client=WORKER)
    directory.add_refs(DRIVER, {B: 1})
    directory.add_refs(WORKER, {C: 1})
    directory.subscribe(WORKER, C)
    actions = directory.client_gone(WORKER)
    assert sorted(actions.freed_ids) == [A, C]
    assert actions.arena_offsets == [64]
    assert directory.get(B).refs == {DRIVER: 1}
    assert directory.client_gone(WORKER).freed_ids == []


def test_client_gone_cascades_into_contained_refs():
    directory = ObjectDirectory()
    sealed(directory, inline(B), client=WORKER)
    sealed(directory, inline(A, contained=[B]), client=WORKER)
    actions = directory.client_gone(WORKER)
    assert sorted(actions.freed_ids) == [A, B]
    assert directory.entries == {}


# -- spilling -------------------------------------------------------------------------------


def test_spill_candidates_exclude_pinned_inline_and_pending_and_order_lru():
    directory = ObjectDirectory()
    sealed(directory, arena(A, 0))
    sealed(directory, arena(B, 100))
    sealed(directory, arena(C, 200))
    sealed(directory, inline(D))
    directory.add_refs(DRIVER, {b"pending": 1})
    directory.pin(WORKER, A)  # A is now the most recently used, and pinned
    assert [e.object_id for e in directory.spill_candidates()] == [B, C]
    directory.pin(WORKER, B)
    directory.unpin(WORKER, [A, B])
    assert [e.object_id for e in directory.spill_candidates()] == [C, A, B]


def test_spilled_object_is_not_a_candidate_and_frees_its_file():
    directory = ObjectDirectory()
    sealed(directory, arena(A, 256, size=40))
    entry = directory.get(A)
    assert directory.mark_spilled(entry, "/spill/a") == 256
    assert directory.arena_bytes == 0
    assert directory.spill_candidates() == []
    actions = directory.remove_refs(DRIVER, {A: 1})
    assert actions.arena_offsets == [] and actions.spill_paths == ["/spill/a"]


def test_restored_object_counts_again_and_frees_both():
    directory = ObjectDirectory()
    sealed(directory, arena(A, 256, size=40))
    entry = directory.get(A)
    directory.mark_spilled(entry, "/spill/a")
    directory.mark_restored(entry, 1024)
    assert entry.in_arena and directory.arena_bytes == 40
    actions = directory.remove_refs(DRIVER, {A: 1})
    assert actions.arena_offsets == [1024]
    assert actions.spill_paths == ["/spill/a"]
    assert directory.arena_bytes == 0
