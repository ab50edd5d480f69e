"""The node manager's own watch on its worker processes, apart from the template's reports.

The template reports each worker's exit with its status; this watch notices a worker that is
gone with no report (its template died or is stuck). It holds a pidfd per worker: a handle on
that very process, readable once it has exited (a zombie included), never confused with a later
process that reuses the pid. Where pidfds are missing it falls back to kill(pid, 0).
"""

from __future__ import annotations

import os
import select
import signal

from . import lifecycle

UNREPORTED_EXIT_GRACE_S = 1.0  # how long a live template has to report an exit before we count it


class WorkerWatch:
    """Worker id -> a handle on its process; which of them died unreported, and killing them."""

    def __init__(self) -> None:
        self._pids: dict[bytes, int] = {}
        self._pidfds: dict[bytes, int] = {}
        self._suspects: dict[bytes, float] = {}  # seen gone, not yet reported -> when first seen
        self._poller = select.poll()  # no FD_SETSIZE limit, unlike select()
        self._fd_workers: dict[int, bytes] = {}

    def add(self, worker_id: bytes, pid: int) -> None:
        self.discard(worker_id)
        self._pids[worker_id] = pid
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            return  # no pidfds here, or it is already reaped (then its exit report is on its way)
        self._pidfds[worker_id] = pidfd
        self._fd_workers[pidfd] = worker_id
        self._poller.register(pidfd, select.POLLIN)

    def discard(self, worker_id: bytes) -> None:
        self._pids.pop(worker_id, None)
        self._suspects.pop(worker_id, None)
        pidfd = self._pidfds.pop(worker_id, None)
        if pidfd is not None:
            self._poller.unregister(pidfd)
            del self._fd_workers[pidfd]
            os.close(pidfd)

    def kill(self, worker_id: bytes) -> None:
        """SIGKILL the worker if it still runs (by pidfd, so never another process)."""
        pidfd = self._pidfds.get(worker_id)
        if pidfd is None:
            pid = self._pids.get(worker_id)
            if pid is not None:
                lifecycle.kill_quietly(pid, signal.SIGKILL)
            return
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def unreported_exits(self, now: float, grace_s: float = UNREPORTED_EXIT_GRACE_S) -> list[bytes]:
        """Workers gone for at least `grace_s` (since an earlier call saw it) and not reported.

        The grace lets a live template report the exit, with its status, first.
        """
        gone = {self._fd_workers[pidfd] for pidfd, _ in self._poller.poll(0)} if self._pidfds else set()
        gone.update(
            worker_id
            for worker_id, pid in self._pids.items()
            if worker_id not in self._pidfds and not lifecycle.pid_alive(pid)
        )
        self._suspects = {worker_id: self._suspects.get(worker_id, now) for worker_id in gone}
        return [worker_id for worker_id, since in self._suspects.items() if now - since >= grace_s]

    def close(self) -> None:
        for worker_id in list(self._pids):
            self.discard(worker_id)
