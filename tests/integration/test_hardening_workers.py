"""Worker-pool faults on a real cluster.

- A worker killed while tasks are pipelined behind its running one charges only the running one;
  the tasks that never started go back to the queue.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import shoal
from shoal import exceptions
from shoal._core.config import load_config
from shoal.util.state import list_workers

from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(300)

GET_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def cluster():
    """2 CPUs; tasks here that ask for both run one worker at a time."""
    context = shoal.init(num_cpus=2, object_store_memory=128 * 1024 * 1024)
    yield context
    shoal.shutdown()


@shoal.remote
def work(pid_path: str | None = None, hold_s: float = 0.0):
    """Quick by default; with `pid_path`, writes its pid there and holds its worker for `hold_s`."""
    if pid_path is not None:
        with open(pid_path + ".tmp", "w") as file:
            file.write(str(os.getpid()))
        os.replace(pid_path + ".tmp", pid_path)
        time.sleep(hold_s)
    return "done"


def _read_pid(path) -> int | None:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _describe_workers() -> str:
    return "\n".join(f"{row}" for row in list_workers())


def test_killing_a_worker_fails_only_its_running_task_not_the_ones_queued_behind_it(cluster, tmp_path):
    both_cpus = work.options(num_cpus=2, max_retries=0)
    # Learn that `work` is quick, so its calls are pipelined several to a worker.
    assert shoal.get([both_cpus.remote() for _ in range(20)], timeout=GET_TIMEOUT_S) == ["done"] * 20
    pid_path = tmp_path / "long.pid"
    long_running = both_cpus.remote(str(pid_path), 60.0)
    worker_pid = wait_for(lambda: _read_pid(pid_path), 30)
    behind = [both_cpus.remote() for _ in range(100)]
    # One worker at a time can hold 2 CPUs: the short calls queue up behind the long one.
    depth = load_config().pipeline_depth

    def assigned_to_long_worker():
        return {row["pid"]: row["assigned_tasks"] for row in list_workers()}.get(worker_pid) == depth

    wait_for(assigned_to_long_worker, 30, describe=_describe_workers)

    os.kill(worker_pid, signal.SIGKILL)

    with pytest.raises(exceptions.WorkerCrashedError, match=f"pid {worker_pid}"):
        shoal.get(long_running, timeout=GET_TIMEOUT_S)
    outcomes = []
    for ref in behind:
        try:
            outcomes.append(shoal.get(ref, timeout=GET_TIMEOUT_S))
        except exceptions.WorkerCrashedError as error:
            outcomes.append(error)
    crashed = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    assert not crashed, f"{len(crashed)} of {len(behind)} calls that never started were failed: {crashed[0]}"
    assert outcomes == ["done"] * len(behind)
