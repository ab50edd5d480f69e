"""Unit tests for the arena's offset allocator: pure state, no memory is mapped."""

from __future__ import annotations

import bisect
import random
import time

import pytest
from shoal._core.arena_allocator import ArenaAllocator


class _ReferenceFirstFit:
    """The simplest correct first-fit model: one sorted list of holes, scanned in order."""

    def __init__(self, capacity_bytes: int, alignment: int) -> None:
        self.alignment = alignment
        self.holes = [[0, capacity_bytes]] if capacity_bytes else []
        self.blocks: dict[int, int] = {}

    def allocate(self, size_bytes: int) -> int | None:
        reserved = max(-(-size_bytes // self.alignment), 1) * self.alignment
        for hole in self.holes:
            if hole[1] >= reserved:
                start = hole[0]
                hole[0] += reserved
                hole[1] -= reserved
                if not hole[1]:
                    self.holes.remove(hole)
                self.blocks[start] = reserved
                return start
        return None

    def free(self, offset: int) -> None:
        size = self.blocks.pop(offset)
        index = bisect.bisect(self.holes, [offset, size])
        self.holes.insert(index, [offset, size])
        if index + 1 < len(self.holes) and offset + size == self.holes[index + 1][0]:
            self.holes[index][1] += self.holes.pop(index + 1)[1]
        if index > 0 and sum(self.holes[index - 1]) == offset:
            self.holes[index - 1][1] += self.holes.pop(index)[1]


def test_offsets_are_aligned_and_sizes_rounded_up():
    allocator = ArenaAllocator(64 * 1024, alignment=64)
    offsets = [allocator.allocate(size) for size in (1, 63, 64, 65, 127, 1000)]
    assert offsets == [0, 64, 128, 192, 320, 448]
    assert all(offset % 64 == 0 for offset in offsets)
    assert allocator.reserved_bytes(192) == 128
    assert allocator.used_bytes == 64 + 64 + 64 + 128 + 128 + 1024
    assert allocator.used_bytes + allocator.free_bytes == allocator.capacity_bytes
    allocator.check_invariants()


@pytest.mark.parametrize("alignment", [1, 8, 4096])
def test_other_alignments(alignment):
    allocator = ArenaAllocator(alignment * 100, alignment=alignment)
    for size in (1, 3, alignment + 1, 5 * alignment):
        offset = allocator.allocate(size)
        assert offset is not None and offset % alignment == 0
    allocator.check_invariants()


@pytest.mark.parametrize(("capacity_bytes", "alignment"), [(100, 64), (-64, 64), (640, 0), (640, 48), (640, -64)])
def test_invalid_configuration_is_rejected(capacity_bytes, alignment):
    with pytest.raises(ValueError):
        ArenaAllocator(capacity_bytes, alignment=alignment)


def test_negative_size_is_rejected():
    with pytest.raises(ValueError):
        ArenaAllocator(640).allocate(-1)


def test_first_fit_reuses_the_lowest_hole_not_the_best_fitting_one():
    allocator = ArenaAllocator(64 * 100)
    a = allocator.allocate(64 * 10)
    b = allocator.allocate(64)
    c = allocator.allocate(64 * 2)
    allocator.allocate(64)
    allocator.free(a)  # hole of 10 units at 0
    allocator.free(c)  # exact-fit hole of 2 units further up
    assert allocator.allocate(64 * 2) == a
    assert allocator.allocate(64 * 2) == a + 64 * 2
    allocator.free(b)
    assert allocator.allocate(64) == a + 64 * 4
    allocator.check_invariants()


def test_freed_low_region_is_reused_before_untouched_space():
    allocator = ArenaAllocator(64 * 1000)
    offsets = [allocator.allocate(64 * 4) for _ in range(10)]
    allocator.free(offsets[3])
    assert allocator.allocate(64 * 4) == offsets[3]


def test_freeing_neighbours_coalesces_into_one_hole():
    allocator = ArenaAllocator(64 * 100)
    a = allocator.allocate(64 * 3)
    b = allocator.allocate(64 * 5)
    c = allocator.allocate(64 * 7)
    tail = (c + 64 * 7, 64 * (100 - 15))
    allocator.free(a)
    allocator.free(b)
    assert allocator.holes() == [(a, 64 * 8), tail]
    assert allocator.largest_free_bytes == tail[1]
    assert allocator.allocate(64 * 8) == a
    allocator.check_invariants()


def test_freeing_the_block_between_two_holes_merges_all_three():
    allocator = ArenaAllocator(64 * 100)
    a, b, c, d = (allocator.allocate(64) for _ in range(4))
    allocator.free(a)
    allocator.free(c)
    assert allocator.num_holes == 3
    allocator.free(b)
    assert allocator.holes()[0] == (a, 64 * 3)
    allocator.free(d)
    assert allocator.holes() == [(0, 64 * 100)]
    assert allocator.num_blocks == 0 and allocator.used_bytes == 0


def test_exhaustion_returns_none_until_something_is_freed():
    allocator = ArenaAllocator(64 * 4)
    offsets = [allocator.allocate(64) for _ in range(4)]
    assert allocator.free_bytes == 0 and allocator.largest_free_bytes == 0
    assert allocator.allocate(1) is None
    assert allocator.allocate(0) is None
    allocator.free(offsets[2])
    assert allocator.allocate(64) == offsets[2]


def test_fragmented_space_cannot_serve_a_large_request():
    allocator = ArenaAllocator(64 * 100)
    offsets = [allocator.allocate(64) for _ in range(100)]
    for offset in offsets[::2]:
        allocator.free(offset)
    assert allocator.free_bytes == 64 * 50
    assert allocator.largest_free_bytes == 64
    assert allocator.num_holes == 50
    assert allocator.allocate(128) is None
    assert allocator.allocate(64) == 0
    allocator.check_invariants()


def test_free_of_unknown_offset_raises_key_error():
    allocator = ArenaAllocator(64 * 10)
    offset = allocator.allocate(128)
    with pytest.raises(KeyError):
        allocator.free(64)  # inside the block, not its start
    with pytest.raises(KeyError):
        allocator.free(640)
    allocator.free(offset)
    with pytest.raises(KeyError):
        allocator.free(offset)  # double free
    allocator.check_invariants()


def test_zero_size_blocks_are_unique_and_freeable():
    allocator = ArenaAllocator(64 * 10)
    first = allocator.allocate(0)
    second = allocator.allocate(0)
    assert first is not None and second is not None and first != second
    assert allocator.num_blocks == 2 and allocator.used_bytes == 128
    allocator.free(first)
    allocator.free(second)
    assert allocator.used_bytes == 0 and allocator.holes() == [(0, 640)]


def test_empty_arena_serves_nothing():
    allocator = ArenaAllocator(0)
    assert allocator.allocate(0) is None
    assert allocator.largest_free_bytes == 0 and allocator.holes() == []


@pytest.mark.parametrize("seed", range(4))
def test_matches_reference_first_fit_under_random_churn(seed):
    # Hundreds of holes at the peak, so hole chunks split and merge several times.
    rng = random.Random(seed)
    capacity_bytes = 64 * 20_000
    allocator = ArenaAllocator(capacity_bytes)
    reference = _ReferenceFirstFit(capacity_bytes, 64)
    live = [allocator.allocate(64 * rng.randrange(1, 4)) for _ in range(3000)]
    for offset in live:
        assert reference.allocate(allocator.reserved_bytes(offset)) == offset
    for step in range(6000):
        if live and rng.random() < (0.6 if step < 3000 else 0.4):
            offset = live.pop(rng.randrange(len(live)))
            allocator.free(offset)
            reference.free(offset)
        else:
            size = rng.choice([0, 1, 64, 100, 300, 1000, 5000])
            offset = allocator.allocate(size)
            assert offset == reference.allocate(size)
            if offset is not None:
                live.append(offset)
        if step % 500 == 0:
            allocator.check_invariants()
    assert allocator.holes() == [tuple(hole) for hole in reference.holes]
    assert allocator.largest_free_bytes == max((size for _, size in reference.holes), default=0)
    for offset in live:
        allocator.free(offset)
    assert allocator.holes() == [(0, capacity_bytes)]
    allocator.check_invariants()


def test_ten_thousand_alloc_free_pairs_are_fast():
    allocator = ArenaAllocator(1 << 30)
    # A fragmented background, so the search cannot stop at the first hole every time.
    background = [allocator.allocate(4096) for _ in range(4000)]
    for offset in background[::2]:
        allocator.free(offset)
    started_s = time.perf_counter()
    for size in range(10_000):
        allocator.free(allocator.allocate(size * 8))
    elapsed_s = time.perf_counter() - started_s
    # About 30 ms on a slow VM; a quadratic search would take seconds.
    assert elapsed_s < 0.5
    allocator.check_invariants()
