"""Unit tests for the shared-memory arena and the spill directory.

Real memfds and mappings in the test process, plus one child process per context ('fork' and
'spawn') that attaches by /proc path. Every test proves it left no arena fd or mapping behind.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import pickle

import numpy as np
import pyarrow as pa
import pytest
from shoal._core.shared_arena import SharedArena, SpillDirectory

_CAPACITY_BYTES = 1 << 20


def _arena_fds() -> set[int]:
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("/memfd:shoal-arena"):
                fds.add(int(name))
        except OSError:
            pass  # the fd listdir itself used, closed by now
    return fds


def _arena_mapping_count() -> int:
    with open("/proc/self/maps") as maps:
        return sum("memfd:shoal-arena" in line for line in maps)


@pytest.fixture(autouse=True)
def _no_arena_left_behind():
    fds_before, mappings_before = _arena_fds(), _arena_mapping_count()
    yield
    gc.collect()
    assert _arena_fds() == fds_before, "a test left an arena fd open"
    assert _arena_mapping_count() == mappings_before, "a test left an arena mapped"


@pytest.fixture
def arena():
    shared_arena = SharedArena.create(_CAPACITY_BYTES)
    yield shared_arena
    shared_arena.close()


class _ReleaseCounter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def _points_into(arena: SharedArena, address: int) -> bool:
    return arena.base_address <= address < arena.base_address + arena.capacity_bytes


def test_create_describes_itself(arena):
    assert arena.describe() == (os.getpid(), arena.fd, _CAPACITY_BYTES)
    assert arena.capacity_bytes == _CAPACITY_BYTES
    assert os.readlink(f"/proc/self/fd/{arena.fd}").startswith("/memfd:shoal-arena")
    assert os.fstat(arena.fd).st_size == _CAPACITY_BYTES


def test_create_rejects_non_positive_capacity():
    with pytest.raises(ValueError):
        SharedArena.create(0)


def test_attach_in_process_shares_the_same_pages(arena):
    with SharedArena.attach(*arena.describe()) as attached:
        assert attached.fd != arena.fd
        assert attached.describe() == arena.describe()
        arena.write(100, [b"from creator"])
        assert bytes(attached.read_view(100, 12)) == b"from creator"
        attached.write(5000, [b"from attacher"])
        assert bytes(arena.read_view(5000, 13)) == b"from attacher"


def test_attach_rejects_an_fd_that_is_not_an_arena(tmp_path):
    with open(tmp_path / "plain", "wb") as plain:
        plain.truncate(_CAPACITY_BYTES)
        with pytest.raises(ValueError, match="not a shoal arena"):
            SharedArena.attach(os.getpid(), plain.fileno(), _CAPACITY_BYTES)


def test_attach_rejects_a_wrong_size(arena):
    with pytest.raises(ValueError, match="expected"):
        SharedArena.attach(os.getpid(), arena.fd, _CAPACITY_BYTES * 2)


def test_attach_to_a_missing_fd_raises(arena):
    with pytest.raises(FileNotFoundError):
        SharedArena.attach(os.getpid(), 1_000_000, _CAPACITY_BYTES)


def test_write_copies_chunks_back_to_back(arena):
    array = np.arange(10, dtype=np.int32)
    chunks = [b"abc", memoryview(b"defg"), array, pickle.PickleBuffer(bytearray(b"hi"))]
    written = arena.write(64, chunks)
    assert written == 3 + 4 + array.nbytes + 2
    view = arena.read_view(64, written)
    assert bytes(view[:7]) == b"abcdefg"
    assert bytes(view[7 : 7 + array.nbytes]) == array.tobytes()
    assert bytes(view[-2:]) == b"hi"


def test_write_rejects_out_of_range_and_non_contiguous(arena):
    with pytest.raises(ValueError, match="outside"):
        arena.write(_CAPACITY_BYTES - 2, [b"abc"])
    with pytest.raises(ValueError, match="outside"):
        arena.write(-1, [b"a"])
    with pytest.raises(ValueError, match="contiguous"):
        arena.write(0, [np.arange(10)[::2]])
    assert arena.write(_CAPACITY_BYTES - 3, [b"abc"]) == 3


def test_serialize_straight_into_a_writable_view(arena):
    array = np.arange(1000, dtype=np.float64)
    buffers: list[pickle.PickleBuffer] = []
    pickle.dumps(array, protocol=5, buffer_callback=buffers.append)
    raw = buffers[0].raw()
    with arena.writable_view(4096, raw.nbytes) as destination:
        destination[:] = raw
    restored = np.frombuffer(arena.read_view(4096, raw.nbytes), dtype=np.float64)
    assert np.array_equal(restored, array)


def test_read_view_is_read_only_and_zero_copy(arena):
    arena.write(128, [b"payload"])
    view = arena.read_view(128, 7)
    assert view.readonly and view.format == "B" and view.nbytes == 7
    with pytest.raises(TypeError):
        view[0] = 0
    array = np.frombuffer(view, dtype=np.uint8)
    assert not array.flags.writeable
    assert array.__array_interface__["data"][0] == arena.base_address + 128
    arena.write(128, [b"P"])
    assert bytes(view) == b"Payload"


@pytest.mark.parametrize("offset", [0, 1, 4095, _CAPACITY_BYTES - 1000, _CAPACITY_BYTES])
@pytest.mark.parametrize("size_bytes", [0, 1, 1000])
def test_read_view_anywhere_in_the_arena(arena, offset, size_bytes):
    size_bytes = min(size_bytes, _CAPACITY_BYTES - offset)
    pattern = (bytes(range(256)) * 4)[:size_bytes]
    arena.write(offset, [pattern])
    view = arena.read_view(offset, size_bytes)
    assert view.nbytes == size_bytes
    assert bytes(view) == pattern


def test_read_view_of_an_arena_that_is_not_a_power_of_two():
    with SharedArena.create(3 * 4096 + 100) as arena:
        arena.write(0, [b"x" * arena.capacity_bytes])
        assert bytes(arena.read_view(4000, 8292)) == b"x" * 8292
        assert bytes(arena.read_view(0, arena.capacity_bytes)) == b"x" * arena.capacity_bytes


def test_read_view_rejects_out_of_range(arena):
    with pytest.raises(ValueError):
        arena.read_view(_CAPACITY_BYTES - 10, 11)
    with pytest.raises(ValueError):
        arena.read_view(0, -1)


def test_release_fires_once_when_the_view_goes(arena):
    released = _ReleaseCounter()
    view = arena.read_view(0, 100, released)
    sliced = view[10:20]
    del view
    gc.collect()
    assert released.calls == 0
    del sliced
    gc.collect()
    assert released.calls == 1


def test_release_waits_for_numpy_arrays_from_pickle_protocol_5(arena):
    original = np.arange(10_000, dtype=np.float64).reshape(100, 100)
    buffers: list[pickle.PickleBuffer] = []
    payload = pickle.dumps(original, protocol=5, buffer_callback=buffers.append)
    size_bytes = arena.write(8192, [buffer.raw() for buffer in buffers])
    released = _ReleaseCounter()
    view = arena.read_view(8192, size_bytes, released)
    restored = pickle.loads(payload, buffers=[view])
    del view
    gc.collect()
    assert np.array_equal(restored, original)
    assert not restored.flags.writeable
    assert _points_into(arena, restored.__array_interface__["data"][0])
    column = restored[:, 3]  # a view of a view still pins the arena
    del restored
    gc.collect()
    assert released.calls == 0
    del column
    gc.collect()
    assert released.calls == 1


def test_release_waits_for_pyarrow_buffers_and_arrays(arena):
    values = np.arange(1000, dtype=np.int64)
    arena.write(0, [values])
    released = _ReleaseCounter()
    buffer = pa.py_buffer(arena.read_view(0, values.nbytes, released))
    array = pa.Array.from_buffers(pa.int64(), len(values), [None, buffer])
    assert _points_into(arena, buffer.address) and not buffer.is_mutable
    del buffer
    gc.collect()
    assert released.calls == 0
    assert array.to_pylist()[:3] == [0, 1, 2]
    del array
    gc.collect()
    assert released.calls == 1


def test_pyarrow_pickle_protocol_5_round_trip_is_zero_copy(arena):
    table = pa.table({"x": pa.array(np.arange(500, dtype=np.float32))})
    buffers: list[pickle.PickleBuffer] = []
    payload = pickle.dumps(table, protocol=5, buffer_callback=buffers.append)
    views = []
    released = _ReleaseCounter()
    offset = 0
    for buffer in buffers:
        size_bytes = arena.write(offset, [buffer.raw()])
        views.append(arena.read_view(offset, size_bytes, released))
        offset += -(-size_bytes // 64) * 64
    restored = pickle.loads(payload, buffers=views)
    del views
    gc.collect()
    assert restored.equals(table)
    data_buffer = restored.column("x").chunk(0).buffers()[1]
    assert _points_into(arena, data_buffer.address)
    del restored, data_buffer
    gc.collect()
    assert released.calls == len(buffers)


def test_release_callback_errors_are_logged_not_raised(arena, caplog):
    def failing_release() -> None:
        raise RuntimeError("store went away")

    with caplog.at_level(logging.ERROR, logger="shoal._core.shared_arena"):
        view = arena.read_view(0, 10, failing_release)
        del view
        gc.collect()
    assert "on_release callback failed" in caplog.text


def test_close_is_idempotent_and_tolerates_live_views():
    arena = SharedArena.create(_CAPACITY_BYTES)
    arena.write(0, [b"survives close"])
    released = _ReleaseCounter()
    read_view = arena.read_view(0, 14, released)
    array = np.frombuffer(arena.writable_view(0, 14), dtype=np.uint8)
    arena.close()
    arena.close()
    assert arena.closed
    assert bytes(read_view) == b"survives close"
    assert array.tobytes() == b"survives close"
    with pytest.raises(ValueError, match="closed"):
        arena.write(0, [b"x"])
    with pytest.raises(ValueError, match="closed"):
        arena.read_view(0, 1)
    del read_view, array
    gc.collect()
    assert released.calls == 1
    # The autouse fixture checks that the mapping went away with the last view.


@pytest.mark.parametrize("populate_supported", [True, False])
def test_prefault_keeps_contents(arena, populate_supported):
    arena._populate_supported = populate_supported
    pattern = bytes(range(256)) * 64
    arena.write(3000, [pattern])
    arena.prefault(1, 100_000)
    arena.prefault(_CAPACITY_BYTES - 10, 10)
    arena.prefault(0, 0)
    assert bytes(arena.read_view(3000, len(pattern))) == pattern
    with pytest.raises(ValueError):
        arena.prefault(_CAPACITY_BYTES, 1)


def _attach_and_write(description: tuple[int, int, int], offset: int, payload: bytes) -> None:
    arena = SharedArena.attach(*description)
    try:
        assert bytes(arena.read_view(0, 6)) == b"parent"
        arena.write(offset, [payload])
    finally:
        arena.close()


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_child_process_attaches_by_proc_path_and_writes(arena, start_method):
    arena.write(0, [b"parent"])
    payload = f"written by a {start_method} child".encode()
    context = multiprocessing.get_context(start_method)
    child = context.Process(target=_attach_and_write, args=(arena.describe(), 12345, payload), daemon=True)
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
        child.join()
    assert child.exitcode == 0
    assert bytes(arena.read_view(12345, len(payload))) == payload


def test_spill_and_restore_round_trip(arena, tmp_path):
    values = np.random.default_rng(0).random(10_000)
    size_bytes = arena.write(0, [values])
    spill = SpillDirectory(tmp_path / "spill")
    path = spill.spill("00ab_cd-ef", arena.read_view(0, size_bytes))
    assert os.path.dirname(path) == spill.path
    assert os.listdir(spill.path) == ["00ab_cd-ef"]  # no temporary file left behind
    assert os.path.getsize(path) == size_bytes
    with arena.writable_view(size_bytes, size_bytes) as destination:
        assert spill.restore_into(path, destination) == size_bytes
    restored = np.frombuffer(arena.read_view(size_bytes, size_bytes), dtype=np.float64)
    assert np.array_equal(restored, values)
    numpy_destination = np.empty_like(values)
    spill.restore_into(path, numpy_destination)
    assert np.array_equal(numpy_destination, values)
    spill.delete(path)
    assert not os.path.exists(path)
    spill.close()


def test_spill_overwrites_an_earlier_copy(tmp_path):
    with SpillDirectory(tmp_path / "spill") as spill:
        spill.spill("key", b"old contents")
        path = spill.spill("key", b"new")
        destination = bytearray(3)
        spill.restore_into(path, destination)
        assert destination == b"new"


def test_restore_checks_size_and_writability(tmp_path):
    with SpillDirectory(tmp_path / "spill") as spill:
        path = spill.spill("key", b"12345")
        with pytest.raises(ValueError, match="holds 5 bytes"):
            spill.restore_into(path, bytearray(4))
        with pytest.raises(ValueError, match="read-only"):
            spill.restore_into(path, b"54321")


def test_spill_directory_refuses_foreign_paths_and_keys(tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"not ours")
    with SpillDirectory(tmp_path / "spill") as spill:
        for bad_key in ("../escape", "a/b", "", ".hidden", "x" * 201):
            with pytest.raises(ValueError):
                spill.spill(bad_key, b"x")
        with pytest.raises(ValueError):
            spill.delete(str(outside))
        with pytest.raises(ValueError):
            spill.restore_into(str(outside), bytearray(8))
        with pytest.raises(FileNotFoundError):
            spill.delete(os.path.join(spill.path, "missing"))
    assert outside.read_bytes() == b"not ours"


def test_spill_directory_must_start_empty(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "someone_elses_file").write_bytes(b"")
    with pytest.raises(FileExistsError):
        SpillDirectory(tmp_path / "busy")
    assert (tmp_path / "busy" / "someone_elses_file").exists()


def test_spill_directory_close_removes_everything_and_is_idempotent(tmp_path):
    spill = SpillDirectory(tmp_path / "nested" / "spill")
    spill.spill("one", b"1")
    spill.spill("two", b"22")
    spill.close()
    spill.close()
    assert not (tmp_path / "nested" / "spill").exists()
    with pytest.raises(ValueError, match="closed"):
        spill.spill("three", b"333")
