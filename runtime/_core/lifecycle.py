"""Process hygiene: children die with their parent, session directories, process titles.

Every process shoal starts asks the kernel to signal it when its parent dies
(PR_SET_PDEATHSIG), so a killed driver never leaves a cluster behind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import time

from . import config

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_libc = None


def _load_libc():
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            _libc = False
    return _libc


def die_with_parent(sig: int = signal.SIGKILL, expected_parent: int | None = None) -> None:
    """Ask Linux to send `sig` to this process when its parent exits."""
    libc = _load_libc()
    if libc:
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if expected_parent is not None and os.getppid() != expected_parent:
        # The parent died before the request took effect.
        os.kill(os.getpid(), sig)


def set_process_title(title: str) -> None:
    """Name the process `shoal::<role>` in ps/top (thread name; argv is left alone)."""
    libc = _load_libc()
    if libc:
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(title.encode()[:15]), 0, 0, 0)


def new_session_dir() -> str:
    root = config.temp_root()
    os.makedirs(root, mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    path = os.path.join(root, f"session_{stamp}_{os.getpid()}_{os.urandom(3).hex()}")
    os.makedirs(os.path.join(path, "logs"), mode=0o700)
    return path


_SOCKET_PATH_MAX = 100  # sockaddr_un.sun_path holds 108 bytes on Linux


def node_socket_path(session_dir: str, name: str = "node") -> str:
    """A node's ipc socket: in the session dir, or a short private dir if that path is too long."""
    path = os.path.join(session_dir, f"{name}.sock")
    if len(path) <= _SOCKET_PATH_MAX:
        return path
    import hashlib

    short_dir = os.path.join("/tmp", f"shoal-sock-{os.getuid()}")
    os.makedirs(short_dir, mode=0o700, exist_ok=True)
    os.chmod(short_dir, 0o700)
    digest = hashlib.blake2b(session_dir.encode(), digest_size=8).hexdigest()
    return os.path.join(short_dir, f"{digest}-{name}.sock")


def remove_session_dir(path: str | None) -> None:
    if path and os.path.basename(path).startswith("session_"):
        for name in ("node", "events"):
            socket_path = node_socket_path(path, name)
            if not socket_path.startswith(path):
                try:
                    os.unlink(socket_path)
                except OSError:
                    pass
        shutil.rmtree(path, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether the process runs; a zombie (exited, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


CRASHED_DIR = "crashed"


def crash_logs_dir(session_dir: str) -> str:
    """Where the logs of a node that died without cleaning up are kept: beside the session dirs."""
    return os.path.join(os.path.dirname(session_dir), CRASHED_DIR, os.path.basename(session_dir))


def keep_logs(session_dir: str | None) -> str | None:
    """Move a session's logs out of it, so removing the session keeps them; returns where they are.

    Safe to call from several processes at once (the first moves them); None if there are none.
    """
    if not session_dir or not os.path.basename(session_dir).startswith("session_"):
        return None
    source, target = os.path.join(session_dir, "logs"), crash_logs_dir(session_dir)
    try:
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        os.rename(source, target)
    except OSError:
        pass  # moved already (or never written): whichever exists is the answer
    for path in (target, source):
        if os.path.isdir(path):
            return path
    return None


def kill_quietly(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
