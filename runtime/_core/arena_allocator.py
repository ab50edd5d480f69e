"""Offset allocator for one node's shared-memory arena: which byte ranges are in use.

Pure state: no I/O, no mmap, no threads, no clock. It hands out offsets; the shared arena
(``shared_arena.py``) owns the memory those offsets point into. Not thread-safe: the object
store that owns an allocator serialises calls to it.

Free space is a set of holes kept sorted by address, first-fit by lowest address, so the low
regions that were touched most recently (already page-faulted) are reused first. Freed blocks
coalesce with the holes on either side, so two neighbouring holes never exist::

    offset 0                                                       capacity_bytes
    |  block  | hole |  block  |  block  |        hole                          |

The holes live in chunks of at most ``_CHUNK_SPLIT_LEN`` entries; each chunk knows its first
start (for ``bisect``) and its largest hole (to skip whole chunks that cannot fit a request).
A first-fit search is two C-speed scans, over the chunk maxima and inside one chunk, so it
costs O(holes / 128 + 128) comparisons at tens of nanoseconds each rather than a Python-level
loop over every hole; ``free`` is two bisections plus an O(128) list insert or delete.
"""

from __future__ import annotations

import bisect
import itertools

__all__ = ["ArenaAllocator"]

# A chunk longer than this is split in two; a chunk that shrinks below half of
# _CHUNK_MERGE_LEN merges with a neighbour when their lengths sum to at most _CHUNK_MERGE_LEN.
# 128 balances the scan over chunk maxima against the scan inside one chunk for up to tens of
# thousands of holes (measured; 64 and 256 were each slower at one end of that range).
_CHUNK_SPLIT_LEN = 128
_CHUNK_MERGE_LEN = 64


def _first_index_at_least(values: list[int], minimum: int) -> int:
    """Index of the first element of ``values`` that is >= ``minimum``, or -1. C-speed scan."""
    hits = itertools.compress(itertools.count(), map(minimum.__le__, values))
    return next(hits, -1)


class _HoleIndex:
    """Holes (start, size) sorted by start, in chunks, each chunk knowing its largest hole.

    Invariants: no chunk is empty; chunk starts are strictly increasing across and within
    chunks; ``_chunk_first_starts[c] == _starts[c][0]`` and ``_chunk_max_sizes[c] ==
    max(_sizes[c])``.
    """

    __slots__ = ("_starts", "_sizes", "_chunk_first_starts", "_chunk_max_sizes", "_count")

    def __init__(self) -> None:
        self._starts: list[list[int]] = []
        self._sizes: list[list[int]] = []
        self._chunk_first_starts: list[int] = []
        self._chunk_max_sizes: list[int] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def largest_size(self) -> int:
        return max(self._chunk_max_sizes, default=0)

    def items(self) -> list[tuple[int, int]]:
        """All holes as (start, size), by address. O(n); for inspection and tests."""
        return [
            (start, size)
            for starts, sizes in zip(self._starts, self._sizes, strict=True)
            for start, size in zip(starts, sizes, strict=True)
        ]

    def take_first_fit(self, size: int) -> int | None:
        """Carves ``size`` bytes off the front of the lowest-address hole that fits them.

        Returns the start of the carved range, or None when no hole is large enough.
        """
        max_sizes = self._chunk_max_sizes
        if max_sizes and max_sizes[0] >= size:
            chunk = 0
        else:
            chunk = _first_index_at_least(max_sizes, size)
            if chunk < 0:
                return None
        starts, sizes = self._starts[chunk], self._sizes[chunk]
        index = 0 if sizes[0] >= size else _first_index_at_least(sizes, size)
        start = starts[index]
        hole_size = sizes[index]
        if hole_size == size:
            self.remove(chunk, index)
        else:
            # Shrinking keeps the address order: the hole still starts after its predecessor.
            starts[index] = start + size
            sizes[index] = hole_size - size
            if index == 0:
                self._chunk_first_starts[chunk] = start + size
            if hole_size == max_sizes[chunk]:
                max_sizes[chunk] = max(sizes)
        return start

    def add_coalescing(self, offset: int, size: int) -> None:
        """Returns ``[offset, offset + size)`` to free space, merging it with adjacent holes.

        The range must not overlap any hole.
        """
        end = offset + size
        chunk = bisect.bisect_left(self._chunk_first_starts, offset) - 1
        if chunk >= 0:
            starts, sizes = self._starts[chunk], self._sizes[chunk]
            index = bisect.bisect_left(starts, offset) - 1
            # (chunk, index): last hole before offset; (next_chunk, next_index): first after.
            if index + 1 < len(starts):
                next_chunk, next_index = chunk, index + 1
            else:
                next_chunk, next_index = chunk + 1, 0
        else:
            next_chunk, next_index = 0, 0
        touches_next = next_chunk < len(self._starts) and self._starts[next_chunk][next_index] == end
        if chunk >= 0 and starts[index] + sizes[index] == offset:
            merged_size = sizes[index] + size
            if touches_next:
                merged_size += self._sizes[next_chunk][next_index]
                # Grow the left hole first: removing the right one may merge chunks.
                self._grow(chunk, index, merged_size)
                self.remove(next_chunk, next_index)
            else:
                self._grow(chunk, index, merged_size)
        elif touches_next:
            next_sizes = self._sizes[next_chunk]
            self._starts[next_chunk][next_index] = offset
            if next_index == 0:
                self._chunk_first_starts[next_chunk] = offset
            self._grow(next_chunk, next_index, next_sizes[next_index] + size)
        else:
            self.insert(offset, size)

    def _grow(self, chunk: int, index: int, size: int) -> None:
        self._sizes[chunk][index] = size
        if size > self._chunk_max_sizes[chunk]:
            self._chunk_max_sizes[chunk] = size

    def insert(self, start: int, size: int) -> None:
        self._count += 1
        if not self._starts:
            self._starts.append([start])
            self._sizes.append([size])
            self._chunk_first_starts.append(start)
            self._chunk_max_sizes.append(size)
            return
        chunk = max(bisect.bisect_right(self._chunk_first_starts, start) - 1, 0)
        starts, sizes = self._starts[chunk], self._sizes[chunk]
        index = bisect.bisect_right(starts, start)
        starts.insert(index, start)
        sizes.insert(index, size)
        if index == 0:
            self._chunk_first_starts[chunk] = start
        if size > self._chunk_max_sizes[chunk]:
            self._chunk_max_sizes[chunk] = size
        if len(starts) > _CHUNK_SPLIT_LEN:
            self._split(chunk)

    def remove(self, chunk: int, index: int) -> None:
        self._count -= 1
        starts, sizes = self._starts[chunk], self._sizes[chunk]
        del starts[index]
        size = sizes.pop(index)
        if not starts:
            self._drop_chunk(chunk)
            return
        if index == 0:
            self._chunk_first_starts[chunk] = starts[0]
        if size == self._chunk_max_sizes[chunk]:
            self._chunk_max_sizes[chunk] = max(sizes)
        if len(starts) < _CHUNK_MERGE_LEN // 2:
            self._merge_with_next(chunk - 1 if chunk + 1 == len(self._starts) else chunk)

    def _split(self, chunk: int) -> None:
        starts, sizes = self._starts[chunk], self._sizes[chunk]
        half = len(starts) // 2
        upper_starts, upper_sizes = starts[half:], sizes[half:]
        del starts[half:], sizes[half:]
        self._chunk_max_sizes[chunk] = max(sizes)
        self._starts.insert(chunk + 1, upper_starts)
        self._sizes.insert(chunk + 1, upper_sizes)
        self._chunk_first_starts.insert(chunk + 1, upper_starts[0])
        self._chunk_max_sizes.insert(chunk + 1, max(upper_sizes))

    def _merge_with_next(self, chunk: int) -> None:
        if chunk < 0 or chunk + 1 >= len(self._starts):
            return
        if len(self._starts[chunk]) + len(self._starts[chunk + 1]) > _CHUNK_MERGE_LEN:
            return
        self._starts[chunk].extend(self._starts[chunk + 1])
        self._sizes[chunk].extend(self._sizes[chunk + 1])
        self._chunk_max_sizes[chunk] = max(self._chunk_max_sizes[chunk], self._chunk_max_sizes[chunk + 1])
        self._drop_chunk(chunk + 1)

    def _drop_chunk(self, chunk: int) -> None:
        del self._starts[chunk], self._sizes[chunk]
        del self._chunk_first_starts[chunk], self._chunk_max_sizes[chunk]

    def check_invariants(self) -> None:
        """Raises AssertionError if the chunk bookkeeping is inconsistent. O(n); tests only."""
        flat_starts = [start for starts in self._starts for start in starts]
        assert flat_starts == sorted(set(flat_starts)), "hole starts not strictly increasing"
        assert self._count == len(flat_starts)
        for chunk, (starts, sizes) in enumerate(zip(self._starts, self._sizes, strict=True)):
            assert starts and len(starts) == len(sizes), f"chunk {chunk} empty or ragged"
            assert self._chunk_first_starts[chunk] == starts[0]
            assert self._chunk_max_sizes[chunk] == max(sizes)


class ArenaAllocator:
    """First-fit allocator of aligned byte ranges inside an arena of fixed capacity.

    Every block reserves a whole number of ``alignment`` units, so every offset handed out is
    a multiple of ``alignment``; a zero-size request reserves one unit so that its offset is
    unique and can be freed like any other.

    Args:
        capacity_bytes: Size of the arena. Must be a non-negative multiple of ``alignment``.
        alignment: Power of two that every returned offset is a multiple of.

    Raises:
        ValueError: If ``alignment`` is not a positive power of two, or ``capacity_bytes`` is
            negative or not a multiple of ``alignment``.

    Example:
        >>> allocator = ArenaAllocator(1024, alignment=64)
        >>> allocator.allocate(100)
        0
        >>> allocator.allocate(10)
        128
        >>> allocator.free(0)
        >>> allocator.used_bytes
        64
    """

    __slots__ = ("_capacity_bytes", "_alignment", "_holes", "_block_size_by_offset", "_used_bytes")

    def __init__(self, capacity_bytes: int, alignment: int = 64) -> None:
        if alignment <= 0 or alignment & (alignment - 1):
            raise ValueError(f"alignment must be a positive power of two, got {alignment}")
        if capacity_bytes < 0 or capacity_bytes % alignment:
            raise ValueError(
                f"capacity_bytes must be a non-negative multiple of alignment ({alignment}), got {capacity_bytes}"
            )
        self._capacity_bytes = capacity_bytes
        self._alignment = alignment
        self._holes = _HoleIndex()
        # offset -> reserved size (a multiple of alignment, at least one alignment unit)
        self._block_size_by_offset: dict[int, int] = {}
        self._used_bytes = 0
        if capacity_bytes:
            self._holes.insert(0, capacity_bytes)

    @property
    def capacity_bytes(self) -> int:
        """Size of the arena this allocator manages."""
        return self._capacity_bytes

    @property
    def alignment(self) -> int:
        """Every offset returned by ``allocate`` is a multiple of this."""
        return self._alignment

    @property
    def used_bytes(self) -> int:
        """Bytes reserved by live blocks, including the rounding up to ``alignment``."""
        return self._used_bytes

    @property
    def free_bytes(self) -> int:
        """Bytes in holes; ``used_bytes + free_bytes == capacity_bytes`` always holds."""
        return self._capacity_bytes - self._used_bytes

    @property
    def largest_free_bytes(self) -> int:
        """Size of the largest hole: the biggest request that ``allocate`` can satisfy now."""
        return self._holes.largest_size()

    @property
    def num_blocks(self) -> int:
        """Number of live (allocated, not yet freed) blocks."""
        return len(self._block_size_by_offset)

    @property
    def num_holes(self) -> int:
        """Number of free ranges; more holes for the same ``free_bytes`` means fragmentation."""
        return len(self._holes)

    def reserved_bytes(self, offset: int) -> int:
        """Bytes reserved for the live block at ``offset``.

        Raises:
            KeyError: If no live block starts at ``offset``.
        """
        return self._block_size_by_offset[offset]

    def holes(self) -> list[tuple[int, int]]:
        """Every hole as ``(offset, size_bytes)``, lowest address first. O(number of holes)."""
        return self._holes.items()

    def allocate(self, size_bytes: int) -> int | None:
        """Reserves ``size_bytes`` at the lowest address where they fit.

        Args:
            size_bytes: Bytes wanted; zero is allowed and still yields a unique offset.

        Returns:
            The offset of the new block (a multiple of ``alignment``), or None when no hole is
            large enough. None does not mean ``free_bytes < size_bytes``: the free space may be
            fragmented.

        Raises:
            ValueError: If ``size_bytes`` is negative.
        """
        if size_bytes < 0:
            raise ValueError(f"size_bytes must be non-negative, got {size_bytes}")
        mask = self._alignment - 1
        reserved = (size_bytes + mask) & ~mask if size_bytes else self._alignment
        start = self._holes.take_first_fit(reserved)
        if start is None:
            return None
        self._block_size_by_offset[start] = reserved
        self._used_bytes += reserved
        return start

    def free(self, offset: int) -> None:
        """Releases the block at ``offset`` and merges it with the holes on either side.

        Raises:
            KeyError: If no live block starts at ``offset`` (never allocated, or already freed).
        """
        try:
            size = self._block_size_by_offset.pop(offset)
        except KeyError:
            raise KeyError(f"no live block at offset {offset}") from None
        self._used_bytes -= size
        self._holes.add_coalescing(offset, size)

    def check_invariants(self) -> None:
        """Raises AssertionError if the internal bookkeeping is inconsistent. O(n); tests only."""
        ranges = sorted(
            [(start, size, "hole") for start, size in self._holes.items()]
            + [(start, size, "block") for start, size in self._block_size_by_offset.items()]
        )
        position = 0
        previous_kind = None
        for start, size, kind in ranges:
            assert start == position, f"gap or overlap at {position}: next range at {start}"
            assert size > 0 and size % self._alignment == 0, f"bad size {size} at {start}"
            assert not (kind == previous_kind == "hole"), f"uncoalesced holes at {start}"
            position = start + size
            previous_kind = kind
        assert position == self._capacity_bytes, f"ranges end at {position}"
        assert self._used_bytes == sum(self._block_size_by_offset.values())
        self._holes.check_invariants()
