"""Fault injection for the reliability tier: finding shoal's processes and ports, killing them,
and checking a job's results value by value.

Everything here acts only on processes this test run started (found as children of a node
manager it started) and only on 127.0.0.1.
"""

from __future__ import annotations

import os
import random
import signal
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psutil
import shoal

from tests.waiting import poll_until

NODE_TITLE = "shoal::node"
TEMPLATE_TITLE = "shoal::template"
WORKER_TITLE = "shoal::worker"


def _named(processes, title: str) -> list[psutil.Process]:
    found = []
    for process in processes:
        try:
            if process.name() == title and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            pass
    return found


def embedded_node_pid() -> int:
    """The node manager of this process's `shoal.init()` cluster (a child of this process)."""
    nodes = _named(psutil.Process().children(), NODE_TITLE)
    if len(nodes) != 1:
        raise AssertionError(f"expected one embedded node manager among this process's children, found {nodes}")
    return nodes[0].pid


def template_pids(node_pid: int) -> list[int]:
    return [process.pid for process in _named(psutil.Process(node_pid).children(), TEMPLATE_TITLE)]


def worker_pids(node_pid: int) -> list[int]:
    """The node's task and actor workers (children of its template)."""
    try:
        family = psutil.Process(node_pid).children(recursive=True)
    except psutil.Error:
        return []
    return [process.pid for process in _named(family, WORKER_TITLE)]


def busy_worker_pids() -> list[int]:
    """Workers the node reports running tasks (the state API's BUSY)."""
    from shoal.util import state

    return [row["pid"] for row in state.list_workers(filters=[("state", "=", "BUSY")], limit=10_000) if row["pid"]]


def sigkill(pid: int) -> bool:
    """SIGKILL one process this run started; False if it was already gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def listening_tcp_ports(pid: int) -> set[int]:
    return {
        connection.laddr.port
        for connection in psutil.Process(pid).net_connections("tcp")
        if connection.status == psutil.CONN_LISTEN
    }


def rss_bytes(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def poll(predicate: Callable[[], object], timeout_s: float) -> bool:
    """Whether `predicate` came true within `timeout_s` (for figures; `tests.waiting.wait_for` to assert)."""
    return bool(poll_until(predicate, timeout_s))


@dataclass
class Tally:
    """A job's results, checked one by one against what each should be."""

    correct: int = 0
    wrong: list = field(default_factory=list)  # (index, got) for values that came back wrong
    errors: dict = field(default_factory=dict)  # exception type name -> count
    first_error: str = ""
    hangs: int = 0  # refs not ready when the wait ran out

    @property
    def checked(self) -> int:
        return self.correct + len(self.wrong) + sum(self.errors.values()) + self.hangs

    def summary(self) -> str:
        return (
            f"{self.correct}/{self.checked} correct, {len(self.wrong)} wrong {self.wrong[:3]}, "
            f"errors {self.errors} {self.first_error}, {self.hangs} not ready in time"
        )


def check_results(
    refs: Sequence, is_correct: Callable[[int, object], bool], timeout_s: float, together: bool = True
) -> Tally:
    """Wait (bounded) for every ref, then check each value with `is_correct(index, value)`.

    With `together` the ready ones are fetched in one `get` (objects to rebuild are rebuilt
    together); when that raises, or without `together`, each is fetched on its own, so that every
    error is counted against its ref. An exception that is not a RayError counts as an error too:
    it is shoal failing inside `get`.
    """
    tally = Tally()
    ready, pending = shoal.wait(list(refs), num_returns=len(refs), timeout=timeout_s, fetch_local=False)
    tally.hangs = len(pending)
    pending_ids = {ref.binary() for ref in pending}
    indexed = [(index, ref) for index, ref in enumerate(refs) if ref.binary() not in pending_ids]
    values = None
    if together:
        try:
            values = shoal.get([ref for _, ref in indexed], timeout=timeout_s)
        except Exception:
            values = None
    for position, (index, ref) in enumerate(indexed):
        if values is not None:
            value = values[position]
        else:
            try:
                value = shoal.get(ref, timeout=timeout_s)
            except shoal.exceptions.GetTimeoutError:
                tally.hangs += 1
                continue
            except Exception as error:
                name = type(error).__name__
                tally.errors[name] = tally.errors.get(name, 0) + 1
                if not tally.first_error:
                    tally.first_error = (str(error).strip().splitlines() or [name])[0][:200]
                continue
        if is_correct(index, value):
            tally.correct += 1
        else:
            tally.wrong.append((index, repr(value)[:80]))
    return tally


def pace(refs: Sequence, fraction: float, timeout_s: float) -> int:
    """Wait until `fraction` of `refs` are ready (bounded); returns how many are."""
    wanted = max(1, min(len(refs), int(len(refs) * fraction)))
    ready, _ = shoal.wait(list(refs), num_returns=wanted, timeout=timeout_s, fetch_local=False)
    return len(ready)


def pick(rng: random.Random, pids: Sequence[int]) -> int | None:
    return rng.choice(list(pids)) if pids else None
