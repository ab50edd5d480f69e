"""The node's shared-memory arena mapping and its spill directory: bytes in and out, no policy.

Owns the memfd, the mmap over it and the files under one spill directory. Must not decide
what lives where: offsets come from ``arena_allocator.ArenaAllocator``, and which object is
pinned, spilled or restored is the object store's business. Linux only (``memfd_create``).

::

    node manager                         worker on the same node (same user)
    SharedArena.create(capacity)         SharedArena.attach(pid, fd, capacity)
      memfd "shoal-arena" (fd)  <------    os.open("/proc/<pid>/fd/<fd>")
      mmap MAP_SHARED                      mmap MAP_SHARED   (same physical pages)
            |                                      |
    write(offset, chunks)                  read_view(offset, size, on_release)
                                             -> read-only memoryview; on_release() runs once
                                                when the last array built on it is gone

The memfd has no name in any filesystem, so nothing leaks when every process on the node is
SIGKILLed: the memory goes back to the kernel with the last fd and mapping.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import pickle
import re
import shutil
import tempfile
import traceback
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["SharedArena", "SpillDirectory"]

logger = logging.getLogger(__name__)

_MEMFD_NAME = "shoal-arena"
_PAGE_BYTES = mmap.PAGESIZE
# Linux >= 5.14; not exported by the mmap module of Python 3.11.
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)
# A single read()/write() moves at most this much on Linux.
_MAX_IO_BYTES = 0x7FFFF000


def _release_pin(pin: Any) -> None:
    """``__del__`` of the pin classes: runs the reader's release callback once."""
    on_release = getattr(pin, "_on_release", None)
    pin._on_release = None
    if on_release is None:
        return
    try:
        on_release()
    except Exception:  # noqa: BLE001 - a failing callback must not break the reader
        # Log the text, not exc_info: a kept traceback would hold this frame and resurrect the
        # pin (and with it the mapping) for as long as the log record lives.
        logger.error("shared arena: on_release callback failed\n%s", traceback.format_exc())


# One ctypes array subclass per power-of-two window length, created on first use. A read view
# pins a window that covers the requested region and slices it, so the number of classes is
# bounded by log2(capacity) instead of growing with every distinct object size (creating a
# ctypes class costs tens of microseconds and ctypes never frees its array types).
_pin_class_by_length: dict[int, type[ctypes.Array[ctypes.c_char]]] = {}


def _pin_class(length: int) -> type[ctypes.Array[ctypes.c_char]]:
    pin_class = _pin_class_by_length.get(length)
    if pin_class is None:
        pin_class = type(
            f"_ArenaPin{length}",
            (ctypes.c_char * length,),
            {"__slots__": ("_on_release",), "__del__": _release_pin},
        )
        _pin_class_by_length[length] = pin_class
    return pin_class


class SharedArena:
    """A memfd-backed shared-memory region mapped into this process.

    Create one per node with ``create`` (the creating process owns the memfd); other processes
    on the node ``attach`` using what ``describe`` returns. Forked children may keep using the
    parent's object, since the mapping and the fd are inherited.

    The arena does not track which ranges are in use; callers pass offsets obtained from an
    ``ArenaAllocator`` and must not write a range that readers still hold views into.
    """

    def __init__(self, fd: int, mapping: mmap.mmap, capacity_bytes: int, creator_pid: int, creator_fd: int) -> None:
        """Use ``create`` or ``attach``; this takes ownership of ``fd`` and ``mapping``."""
        self._fd = fd
        self._mmap: mmap.mmap | None = mapping
        self._capacity_bytes = capacity_bytes
        self._creator_pid = creator_pid
        self._creator_fd = creator_fd
        probe = ctypes.c_char.from_buffer(mapping)
        self._base_address = ctypes.addressof(probe)
        del probe
        self._populate_supported = True

    @classmethod
    def create(cls, capacity_bytes: int) -> SharedArena:
        """Creates a new arena backed by an anonymous memfd and maps it.

        Pages are allocated lazily by the kernel on first touch; see ``prefault``.

        Args:
            capacity_bytes: Size of the arena; must be positive.

        Returns:
            The arena, owned by this process.

        Raises:
            ValueError: If ``capacity_bytes`` is not positive.
            OSError: If the memfd cannot be created or sized.
        """
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {capacity_bytes}")
        # CLOEXEC: exec'd processes attach explicitly through /proc instead of inheriting it.
        fd = os.memfd_create(_MEMFD_NAME, os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, capacity_bytes)
            mapping = mmap.mmap(fd, capacity_bytes, flags=mmap.MAP_SHARED)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, mapping, capacity_bytes, os.getpid(), fd)

    @classmethod
    def attach(cls, creator_pid: int, fd: int, capacity_bytes: int) -> SharedArena:
        """Maps an arena that another process on this node created.

        Args:
            creator_pid: Pid of the process that called ``create`` (it must still be alive).
            fd: The arena's fd number in that process.
            capacity_bytes: The arena's size, as reported by ``describe``.

        Returns:
            The arena; this process owns its own fd and mapping and must ``close`` them.

        Raises:
            FileNotFoundError: If the process or fd no longer exists.
            PermissionError: If the creator runs as another user or is not dumpable.
            ValueError: If that fd is not a shoal arena or is smaller than ``capacity_bytes``.
        """
        proc_path = f"/proc/{creator_pid}/fd/{fd}"
        own_fd = os.open(proc_path, os.O_RDWR | os.O_CLOEXEC)
        try:
            # The fd number may have been closed and reused for something else since.
            target = os.readlink(proc_path)
            if not target.startswith(f"/memfd:{_MEMFD_NAME}"):
                raise ValueError(f"pid {creator_pid} fd {fd} is {target!r}, not a shoal arena")
            size_bytes = os.fstat(own_fd).st_size
            if capacity_bytes <= 0 or size_bytes < capacity_bytes:
                raise ValueError(
                    f"arena of pid {creator_pid} fd {fd} holds {size_bytes} bytes, expected {capacity_bytes}"
                )
            mapping = mmap.mmap(own_fd, capacity_bytes, flags=mmap.MAP_SHARED)
        except BaseException:
            os.close(own_fd)
            raise
        return cls(own_fd, mapping, capacity_bytes, creator_pid, fd)

    def describe(self) -> tuple[int, int, int]:
        """``(creator_pid, fd_in_creator, capacity_bytes)``: the arguments of ``attach``."""
        return self._creator_pid, self._creator_fd, self._capacity_bytes

    @property
    def fd(self) -> int:
        """This process's fd for the arena (the creator's fd in the creating process)."""
        return self._fd

    @property
    def capacity_bytes(self) -> int:
        return self._capacity_bytes

    @property
    def base_address(self) -> int:
        """Virtual address of offset 0 in this process; for diagnostics and tests."""
        return self._base_address

    @property
    def closed(self) -> bool:
        return self._mmap is None

    def close(self) -> None:
        """Unmaps the arena and closes this process's fd. Idempotent.

        Views handed out earlier stay valid: if any is alive, the mapping is left for the
        garbage collector to unmap once the last one is gone.
        """
        mapping, self._mmap = self._mmap, None
        if mapping is None:
            return
        try:
            mapping.close()
        except BufferError:
            logger.debug("shared arena: views still alive at close; unmapping when they die")
        try:
            os.close(self._fd)
        except OSError:
            logger.debug("shared arena: fd %d already closed", self._fd)

    def __enter__(self) -> SharedArena:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._mmap is None else f"fd={self._fd}"
        return f"SharedArena(creator_pid={self._creator_pid}, capacity_bytes={self._capacity_bytes}, {state})"

    def _mapping_for(self, offset: int, size_bytes: int) -> mmap.mmap:
        mapping = self._mmap
        if mapping is None:
            raise ValueError("shared arena is closed")
        if offset < 0 or size_bytes < 0 or offset + size_bytes > self._capacity_bytes:
            raise ValueError(
                f"range [{offset}, {offset + size_bytes}) is outside the arena [0, {self._capacity_bytes})"
            )
        return mapping

    def write(self, offset: int, chunks: Sequence[Any]) -> int:
        """Copies ``chunks`` back to back into the arena starting at ``offset``.

        One memcpy per chunk into the mapping; the GIL is held during each copy.

        Args:
            offset: Where the first chunk goes.
            chunks: Objects exposing a C-contiguous buffer (bytes, memoryview,
                ``pickle.PickleBuffer``, numpy arrays).

        Returns:
            Total bytes written.

        Raises:
            ValueError: If the arena is closed, the data would run past its end, or a chunk is
                not C-contiguous.
        """
        views = [memoryview(chunk) for chunk in chunks]
        total_bytes = 0
        for index, view in enumerate(views):
            if not view.c_contiguous:
                raise ValueError(f"chunk {index} is not C-contiguous")
            total_bytes += view.nbytes
        mapping = self._mapping_for(offset, total_bytes)
        position = offset
        for view in views:
            end = position + view.nbytes
            mapping[position:end] = view
            position = end
        return total_bytes

    def writable_view(self, offset: int, size_bytes: int) -> memoryview:
        """A writable byte view of ``[offset, offset + size_bytes)``, to serialize into.

        Release it (``view.release()`` or drop it) when done; while it is alive ``close``
        cannot unmap the arena and leaves that to the garbage collector.
        """
        mapping = self._mapping_for(offset, size_bytes)
        with memoryview(mapping) as whole:
            return whole[offset : offset + size_bytes]

    def read_view(self, offset: int, size_bytes: int, on_release: Callable[[], None] | None = None) -> memoryview:
        """A read-only, zero-copy view of ``[offset, offset + size_bytes)``.

        Objects built on the view (``np.frombuffer``, pickle protocol 5 out-of-band buffers,
        ``pyarrow.py_buffer``) point into the arena and keep the view's memory alive.

        Args:
            offset: Start of the region.
            size_bytes: Length of the region.
            on_release: Called exactly once, with no arguments, when the last reference to
                this memory is gone: the returned view and everything built on it. It runs in
                whichever thread drops that reference (possibly inside the garbage collector),
                so it must be quick and must not block; exceptions are logged, not raised.
                It is not called if the interpreter exits first.

        Raises:
            ValueError: If the arena is closed or the range is outside it.
        """
        mapping = self._mapping_for(offset, size_bytes)
        # Pin a power-of-two window that covers the region and lies inside the arena.
        window_bytes = min(1 << max(size_bytes - 1, 0).bit_length(), self._capacity_bytes)
        window_offset = min(offset, self._capacity_bytes - window_bytes)
        pin = _pin_class(window_bytes).from_buffer(mapping, window_offset)
        pin._on_release = on_release  # type: ignore[attr-defined]  # slot of the pin class
        start = offset - window_offset
        with memoryview(pin) as typed, typed.cast("B") as raw:
            return raw[start : start + size_bytes].toreadonly()

    def prefault(self, offset: int, size_bytes: int) -> None:
        """Makes the pages of a range resident and mapped, so later copies take no faults.

        Uses ``MADV_POPULATE_WRITE`` (Linux >= 5.14), which leaves contents untouched. On
        older kernels it falls back to rewriting one byte per page with its own value, which
        races with writers: there, call it only on ranges nobody is writing.

        Meant for a background thread warming free space; the page cache is shared, but each
        process maps pages into its own page tables, so every process prefaults for itself.
        """
        mapping = self._mapping_for(offset, size_bytes)
        if size_bytes == 0:
            return
        start = offset - offset % _PAGE_BYTES
        end = min(-(-(offset + size_bytes) // _PAGE_BYTES) * _PAGE_BYTES, self._capacity_bytes)
        if self._populate_supported:
            try:
                mapping.madvise(_MADV_POPULATE_WRITE, start, end - start)
                return
            except OSError:
                self._populate_supported = False
                logger.debug("shared arena: MADV_POPULATE_WRITE unsupported; touching pages")
        with memoryview(mapping) as whole:
            pages = whole[start:end:_PAGE_BYTES]
            pages[:] = bytes(pages)
            pages.release()


# Spill files are named after the object key; anything else could escape the directory.
_OBJECT_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,200}")


class SpillDirectory:
    """A private directory of spilled objects, one file per object, removed on ``close``.

    Files are written to a temporary name and renamed, so a file under its final name is
    always complete. They are not fsynced: spilled copies only need to outlive memory
    pressure, not a machine crash.

    Args:
        path: Directory to use. Created if missing (with its parents, mode 0o700); if it
            exists it must be empty, because ``close`` deletes everything in it.

    Raises:
        FileExistsError: If ``path`` exists and is not an empty directory.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.path.abspath(os.fspath(path))
        os.makedirs(self._path, mode=0o700, exist_ok=True)
        if os.listdir(self._path):
            raise FileExistsError(f"spill directory {self._path} is not empty")
        self._closed = False

    @property
    def path(self) -> str:
        return self._path

    def spill(self, object_key: str, view: Any) -> str:
        """Writes the bytes of ``view`` to a file named after ``object_key``.

        Args:
            object_key: Letters, digits, ``_`` and ``-`` only (e.g. an object id in hex).
            view: A C-contiguous buffer (typically a ``read_view`` of the arena).

        Returns:
            The path of the file, to pass to ``restore_into`` and ``delete``.

        Raises:
            ValueError: If the directory is closed or ``object_key`` has other characters.
        """
        self._check_open()
        if not _OBJECT_KEY_PATTERN.fullmatch(object_key):
            raise ValueError(f"object_key must match {_OBJECT_KEY_PATTERN.pattern!r}")
        final_path = os.path.join(self._path, object_key)
        fd, temp_path = tempfile.mkstemp(prefix=f".{object_key}.", suffix=".tmp", dir=self._path)
        try:
            with pickle.PickleBuffer(view).raw() as remaining:
                position = 0
                while position < remaining.nbytes:
                    position += os.write(fd, remaining[position : position + _MAX_IO_BYTES])
            os.close(fd)
            fd = -1
            os.replace(temp_path, final_path)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            os.unlink(temp_path)
            raise
        return final_path

    def restore_into(self, path: str, dest_view: Any) -> int:
        """Reads a spilled file into ``dest_view``, which must be exactly the file's size.

        Returns:
            Bytes read.

        Raises:
            ValueError: If the sizes differ or ``path`` is not in this directory.
            FileNotFoundError: If the file does not exist.
        """
        self._check_member(path)
        with open(path, "rb", buffering=0) as file, pickle.PickleBuffer(dest_view).raw() as raw:
            if raw.readonly:
                raise ValueError("dest_view is read-only")
            file_bytes = os.fstat(file.fileno()).st_size
            if file_bytes != raw.nbytes:
                raise ValueError(f"spilled file {path} holds {file_bytes} bytes, destination holds {raw.nbytes}")
            position = 0
            while position < file_bytes:
                read_bytes = file.readinto(raw[position : position + _MAX_IO_BYTES])
                if not read_bytes:
                    raise EOFError(f"spilled file {path} shrank while being restored")
                position += read_bytes
        return file_bytes

    def delete(self, path: str) -> None:
        """Removes one spilled file.

        Raises:
            ValueError: If ``path`` is not in this directory.
            FileNotFoundError: If the file does not exist.
        """
        self._check_member(path)
        os.unlink(path)

    def close(self) -> None:
        """Removes the directory and every file in it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        shutil.rmtree(self._path, ignore_errors=True)

    def __enter__(self) -> SpillDirectory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"spill directory {self._path} is closed")

    def _check_member(self, path: str) -> None:
        self._check_open()
        if os.path.dirname(os.path.abspath(path)) != self._path:
            raise ValueError(f"{path} is not in spill directory {self._path}")
