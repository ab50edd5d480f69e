"""Process hygiene: children die with their parent, session directories, process titles.

Every process shoal starts asks the kernel to signal it when its parent dies
(PR_SET_PDEATHSIG), so a killed driver never leaves a cluster behind. A session directory
(owner-only, 0700) records the process it belongs to; one whose process is gone (a node that
was SIGKILLed) is removed by the next `collect_stale_sessions`, which also prunes the logs kept
of crashed nodes (`keep_logs`) to the newest few and the recent ones.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import shutil
import signal
import stat
import time
from typing import Literal

from . import config

logger = logging.getLogger(__name__)

SESSION_OWNER_FILE = "owner.json"
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_libc: ctypes.CDLL | Literal[False] | None = None  # None: not loaded yet; False: not available


def _load_libc() -> ctypes.CDLL | Literal[False]:
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
    """A new owner-only session directory, recorded as this process's until `record_session_owner`."""
    root = config.temp_root()
    os.makedirs(root, mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    path = os.path.join(root, f"session_{stamp}_{os.getpid()}_{os.urandom(3).hex()}")
    os.mkdir(path, 0o700)
    os.chmod(path, 0o700)  # whatever the umask
    os.mkdir(os.path.join(path, "logs"), 0o700)
    os.chmod(os.path.join(path, "logs"), 0o700)
    record_session_owner(path, os.getpid())
    return path


def record_session_owner(session_dir: str, pid: int) -> None:
    """The process a session directory lives for: once it is gone, the directory is stale."""
    identity = _process_identity(pid)
    if identity is None:
        return  # already gone: the directory stays unowned, and is never collected
    temp_path = os.path.join(session_dir, f".{SESSION_OWNER_FILE}.{os.getpid()}")
    descriptor = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(identity, handle)
    os.replace(temp_path, os.path.join(session_dir, SESSION_OWNER_FILE))


def _read_text(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def _process_identity(pid: int) -> dict | None:
    """What tells this process apart from a later one with the same pid; None if it is gone.

    The start time (clock ticks since boot) changes when a pid is reused; the boot id when the
    machine restarts; the pid namespace says whether this process can judge the pid at all.
    """
    stat = _read_text(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name in parentheses may hold spaces
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None  # a zombie has exited: its node is gone
    try:
        pid_namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_namespace = ""
    return {
        "pid": pid,
        "start_ticks": int(fields[19]),
        "boot_id": (_read_text("/proc/sys/kernel/random/boot_id") or "").strip(),
        "pid_namespace": pid_namespace,
    }


def session_is_stale(session_dir: str) -> bool:
    """True only when the directory's recorded process is certainly gone.

    A directory without a record (being created, or from an older shoal) and one recorded by
    another pid namespace (another container sharing /tmp) are never stale.
    """
    try:
        with open(os.path.join(session_dir, SESSION_OWNER_FILE)) as handle:
            recorded = json.load(handle)
        pid = int(recorded["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    now = _process_identity(os.getpid()) or {}
    if recorded.get("boot_id") and now.get("boot_id") and recorded["boot_id"] != now["boot_id"]:
        return True  # the machine restarted since
    if recorded.get("pid_namespace") != now.get("pid_namespace"):
        return False
    current = _process_identity(pid)
    return current is None or current["start_ticks"] != recorded.get("start_ticks")


def collect_stale_sessions() -> list[str]:
    """Remove the session directories (token, logs, sockets, spill files) of nodes that are gone."""
    root = config.temp_root()
    try:
        names = os.listdir(root)
    except OSError:
        return []
    removed = []
    for name in sorted(names):
        path = os.path.join(root, name)
        if name.startswith("session_") and session_is_stale(path):
            remove_session_dir(path)
            removed.append(path)
            logger.info("removed the stale session directory %s", path)
    prune_crash_logs()
    return removed


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
    """Whether `pid` runs; an exited process its parent has not reaped yet (a zombie) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _read_text(f"/proc/{pid}/stat")
    return stat is None or stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])


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
        os.utime(target)  # its age, for prune_crash_logs, counts from the crash
    except OSError:
        pass  # moved already (or never written): whichever exists is the answer
    for path in (target, source):
        if os.path.isdir(path):
            return path
    return None


def prune_crash_logs(now: float | None = None) -> list[str]:
    """Remove kept crash logs beyond the newest `crash_logs_keep` or older than `crash_logs_max_age_days`.

    Only this user's own directories named like sessions, directly in `<tmp>/shoal-<uid>/crashed/`,
    are candidates (a symlink or anything else there is left alone); their age is their mtime,
    which `keep_logs` sets when it moves them. Returns the paths removed.
    """
    settings = config.load_config()
    root = os.path.join(config.temp_root(), CRASHED_DIR)
    try:
        names = os.listdir(root)
    except OSError:
        return []
    kept = []
    for name in names:
        path = os.path.join(root, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue  # removed meanwhile, by another shoal process
        if name.startswith("session_") and stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
            kept.append((info.st_mtime, name, path))
    kept.sort(reverse=True)  # newest first
    oldest_allowed = (time.time() if now is None else now) - settings.crash_logs_max_age_days * 86400
    removed = []
    for rank, (mtime, _, path) in enumerate(kept):
        if rank >= settings.crash_logs_keep or mtime < oldest_allowed:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        logger.info("removed %d crashed nodes' log directories from %s", len(removed), root)
    return removed


def kill_quietly(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
