"""Worker-pool faults on a real cluster: a killed template, a killed worker with tasks behind it.

- Killing the worker template takes its workers with it; the node manager counts them as exited
  (their tasks are retried), restarts the template and goes on running tasks.
- A worker that dies without its template reporting it (the template is stopped) is noticed
  directly, through its pid.
- A worker killed while tasks are pipelined behind its running one charges only the running one;
  the tasks that never started go back to the queue.
- A force-cancel of a task pipelined behind the running one drops only it; the worker and its
  running task go on. A force-cancel of the running one kills the worker, as before.
- A result nobody wants (a duplicate's, a cancelled task's) gives its arena block back once: the
  worker's later exit does not free it again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import shoal
import zmq
from shoal import exceptions
from shoal._core import lifecycle, protocol
from shoal._core.client import current as current_client
from shoal._core.config import load_config
from shoal._core.worker_watch import WorkerWatch
from shoal.util.state import list_nodes, list_workers

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
def where():
    return os.getpid()


@shoal.remote
def work(pid_path: str | None = None, hold_s: float = 0.0):
    """Quick by default; with `pid_path`, writes its pid there and holds its worker for `hold_s`."""
    if pid_path is not None:
        with open(pid_path + ".tmp", "w") as file:
            file.write(str(os.getpid()))
        os.replace(pid_path + ".tmp", pid_path)
        time.sleep(hold_s)
    return "done"


@shoal.remote
def hold_until(pid_path: str, release_path: str) -> int:
    """Writes its pid to `pid_path`, then runs until `release_path` exists."""
    with open(pid_path + ".tmp", "w") as file:
        file.write(str(os.getpid()))
    os.replace(pid_path + ".tmp", pid_path)
    while not os.path.exists(release_path):
        time.sleep(0.01)
    return os.getpid()


@shoal.remote
def report_a_result_nobody_wants(size_bytes: int) -> int:
    """Sends what a worker sends for a task the node no longer waits for: a result in the arena."""
    client = current_client()
    reply = client.request(lambda request_id: protocol.AllocateObject(request_id, size_bytes))
    task_id = os.urandom(16)
    value = protocol.ObjectValue(task_id + (1).to_bytes(4, "big"), None, reply.offset, size_bytes, False, [])
    client.finish_task(protocol.TaskResult(task_id, [value]))
    return os.getpid()


@shoal.remote
class Counter:
    def __init__(self):
        self.count = 0

    def add(self) -> tuple[int, int]:
        self.count += 1
        return self.count, os.getpid()


def _templates() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if _name(p) == "shoal::template"]


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.Error:
        return ""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _worker_pids() -> set[int]:
    return {row["pid"] for row in list_workers()}


def _read_pid(path) -> int | None:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _describe_workers() -> str:
    return "\n".join(f"{row}" for row in list_workers())


def _store_used_bytes() -> int:
    [node] = list_nodes()
    return node["object_store_used_bytes"]


def _pipeline_behind(worker_pid: int, quick) -> list:
    """Submits short calls until the worker running the long one holds a full pipeline of them."""
    behind = [quick.remote() for _ in range(100)]
    depth = load_config().pipeline_depth

    def assigned_to_long_worker():
        return {row["pid"]: row["assigned_tasks"] for row in list_workers()}.get(worker_pid) == depth

    wait_for(assigned_to_long_worker, 30, describe=_describe_workers)
    return behind


def test_killing_the_template_counts_its_workers_as_exited_and_tasks_still_run(cluster, tmp_path):
    shoal.get([where.remote() for _ in range(4)], timeout=GET_TIMEOUT_S)
    restarting = Counter.options(max_restarts=1).remote()
    dying = Counter.options(max_restarts=0).remote()
    assert shoal.get([restarting.add.remote(), dying.add.remote()], timeout=GET_TIMEOUT_S)[0][0] == 1
    [template] = _templates()
    old_workers = wait_for(_worker_pids, 30)
    assert all(psutil.Process(pid).ppid() == template.pid for pid in old_workers)
    # A task running when the template dies is retried (its worker dies with the template).
    pid_path = tmp_path / "running.pid"
    running = work.options(max_retries=1).remote(str(pid_path), 3.0)
    first_pid = wait_for(lambda: _read_pid(pid_path), 30)
    pid_path.unlink()

    os.kill(template.pid, signal.SIGKILL)

    wait_for(lambda: not any(_alive(pid) for pid in old_workers | {first_pid}), 30)
    # No phantom: the state API stops listing the dead workers as IDLE and alive.
    wait_for(lambda: not (_worker_pids() & (old_workers | {first_pid})), 30, describe=_describe_workers)
    assert sorted(shoal.get([work.remote() for _ in range(10)], timeout=GET_TIMEOUT_S)) == ["done"] * 10
    assert shoal.get(running, timeout=GET_TIMEOUT_S) == "done"
    assert _read_pid(pid_path) not in (None, first_pid)  # it ran again, on a new worker
    # Actors' workers were the template's too: each restarts or dies as its options say.
    count, actor_pid = shoal.get(restarting.add.remote(), timeout=GET_TIMEOUT_S)
    assert count == 1 and actor_pid not in old_workers
    with pytest.raises(exceptions.RayActorError):
        shoal.get(dying.add.remote(), timeout=GET_TIMEOUT_S)
    [new_template] = wait_for(_templates, 30)
    assert new_template.pid != template.pid
    rows = list_workers()
    assert rows and all(row["is_alive"] and _alive(row["pid"]) for row in rows), rows
    assert all(psutil.Process(row["pid"]).ppid() == new_template.pid for row in rows), rows


def test_a_worker_dead_without_a_report_from_its_template_is_noticed(cluster, tmp_path):
    shoal.get([where.remote() for _ in range(4)], timeout=GET_TIMEOUT_S)
    [template] = _templates()
    pid_path = tmp_path / "held.pid"
    held = work.options(max_retries=0).remote(str(pid_path), 60.0)
    worker_pid = wait_for(lambda: _read_pid(pid_path), 30)
    # A stopped template cannot reap or report its workers: only a direct watch sees the death.
    os.kill(template.pid, signal.SIGSTOP)
    try:
        os.kill(worker_pid, signal.SIGKILL)
        with pytest.raises(exceptions.WorkerCrashedError, match=f"pid {worker_pid}"):
            shoal.get(held, timeout=GET_TIMEOUT_S)
        wait_for(lambda: worker_pid not in _worker_pids(), 30, describe=_describe_workers)
    finally:
        os.kill(template.pid, signal.SIGCONT)
    assert sorted(shoal.get([work.remote() for _ in range(10)], timeout=GET_TIMEOUT_S)) == ["done"] * 10


def test_the_new_template_makes_the_workers_the_dead_one_was_asked_for(cluster, tmp_path):
    shoal.get([where.remote() for _ in range(4)], timeout=GET_TIMEOUT_S)
    [template] = _templates()
    pid_path = tmp_path / "held.pid"
    held = work.options(max_retries=0).remote(str(pid_path), 60.0)
    held_pid = wait_for(lambda: _read_pid(pid_path), 30)
    os.kill(template.pid, signal.SIGSTOP)
    try:
        others = _worker_pids() - {held_pid}
        for pid in others:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not (_worker_pids() & others), 30, describe=_describe_workers)
        # A CPU is free and no worker is idle: a worker is asked of the stopped template,
        # and one for a new actor.
        half = where.options(num_cpus=0.5).remote()
        actor = Counter.options(num_cpus=0, max_restarts=0).remote()
        list_workers()  # answered only after the node manager acted on both
    finally:
        os.kill(template.pid, signal.SIGKILL)
    with pytest.raises(exceptions.WorkerCrashedError, match=f"pid {held_pid}.*worker template died"):
        shoal.get(held, timeout=GET_TIMEOUT_S)
    assert shoal.get(half, timeout=GET_TIMEOUT_S) != held_pid
    # The actor never had a process, so this is its first start, not a restart.
    assert shoal.get(actor.add.remote(), timeout=GET_TIMEOUT_S)[0] == 1


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


def test_what_a_dead_worker_sent_after_its_exit_is_ignored(cluster):
    """A message that its exit overtook (here its registration, replayed) must not revive it."""
    shoal.get([where.remote() for _ in range(4)], timeout=GET_TIMEOUT_S)
    row = wait_for(lambda: next((r for r in list_workers() if r["state"] == "IDLE"), None), 30)
    worker_id, pid = bytes.fromhex(row["worker_id"]), row["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pid not in _worker_pids(), 30, describe=_describe_workers)
    session_dir = current_client().node_info.session_dir
    context = zmq.Context()
    ghost = context.socket(zmq.DEALER)
    ghost.setsockopt(zmq.LINGER, 0)
    ghost.setsockopt(zmq.IDENTITY, worker_id)
    try:
        ghost.connect(f"ipc://{lifecycle.node_socket_path(session_dir)}")
        ghost.send(protocol.encode(protocol.RegisterClient(worker_id, pid, "worker")))
        # Registered, it would be an idle worker that takes tasks and never runs them.
        for _ in range(5):
            list_workers()
            assert len(shoal.get([where.remote() for _ in range(4)], timeout=GET_TIMEOUT_S)) == 4
        assert ghost.poll(0) == 0  # and it was never answered
    finally:
        ghost.close()
        context.term()


def test_worker_watch_reports_an_exit_nobody_reaped_only_after_the_grace():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    watch = WorkerWatch()
    try:
        watch.add(b"worker", child.pid)
        assert watch.unreported_exits(10.0, 1.0) == []  # alive
        watch.kill(b"worker")
        wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, 30)
        assert watch.unreported_exits(20.0, 1.0) == []  # gone, but its parent may yet report it
        assert watch.unreported_exits(20.5, 1.0) == []
        assert watch.unreported_exits(21.0, 1.0) == [b"worker"]
        watch.discard(b"worker")  # reported: no longer watched
        assert watch.unreported_exits(30.0, 1.0) == []
    finally:
        watch.close()
        child.kill()
        child.wait()


def test_force_cancelling_a_task_queued_on_a_busy_worker_drops_it_and_spares_the_worker(cluster, tmp_path):
    quick = work.options(num_cpus=2, max_retries=0)
    # Learn that `work` is quick, so its calls are pipelined several to a worker.
    assert shoal.get([quick.remote() for _ in range(20)], timeout=GET_TIMEOUT_S) == ["done"] * 20
    pid_path, release_path = tmp_path / "long.pid", tmp_path / "release"
    long_running = hold_until.options(num_cpus=2, max_retries=0).remote(str(pid_path), str(release_path))
    worker_pid = wait_for(lambda: _read_pid(pid_path), 30)
    behind = _pipeline_behind(worker_pid, quick)
    # The first is right behind the running task; the other further down the worker's pipeline.
    victims = [behind[0], behind[3]]

    for victim in victims:
        shoal.cancel(victim, force=True)

    for victim in victims:
        with pytest.raises(exceptions.TaskCancelledError):
            shoal.get(victim, timeout=GET_TIMEOUT_S)
    # Cancelled while the task ahead of them still runs, on a worker still alive.
    assert shoal.wait([long_running], timeout=0)[0] == []
    assert _alive(worker_pid)
    release_path.touch()
    assert shoal.get(long_running, timeout=GET_TIMEOUT_S) == worker_pid  # no retry: max_retries=0
    rest = [ref for ref in behind if ref not in victims]
    assert shoal.get(rest, timeout=GET_TIMEOUT_S) == ["done"] * len(rest)
    assert worker_pid in _worker_pids()


def test_a_queued_task_that_began_before_its_force_cancel_arrived_is_killed_with_its_worker(cluster, tmp_path):
    quick = work.options(num_cpus=2, max_retries=0)
    assert shoal.get([quick.remote() for _ in range(20)], timeout=GET_TIMEOUT_S) == ["done"] * 20
    pid_path, release_path, next_pid_path = tmp_path / "long.pid", tmp_path / "release", tmp_path / "next.pid"
    long_running = hold_until.options(num_cpus=2, max_retries=0).remote(str(pid_path), str(release_path))
    worker_pid = wait_for(lambda: _read_pid(pid_path), 30)
    following = quick.remote(str(next_pid_path), 120.0)  # pipelined right behind the long one
    behind = _pipeline_behind(worker_pid, quick)
    node_manager = psutil.Process(current_client().node_info.node_manager_pid)
    # The node manager is told to cancel the next task before it hears that the long one ended:
    # to it, the next is still queued behind the long one, though it has begun.
    node_manager.suspend()
    try:
        shoal.cancel(following, force=True)
        release_path.touch()
        wait_for(lambda: _read_pid(next_pid_path), 30)
    finally:
        node_manager.resume()

    with pytest.raises(exceptions.TaskCancelledError):
        shoal.get(following, timeout=GET_TIMEOUT_S)
    wait_for(lambda: not _alive(worker_pid), 30)  # forced, it did not run on to the end
    assert shoal.get(long_running, timeout=GET_TIMEOUT_S) == worker_pid
    assert shoal.get(behind, timeout=GET_TIMEOUT_S) == ["done"] * len(behind)


def test_force_cancelling_the_running_task_kills_its_worker_and_spares_those_behind(cluster, tmp_path):
    quick = work.options(num_cpus=2, max_retries=0)
    assert shoal.get([quick.remote() for _ in range(20)], timeout=GET_TIMEOUT_S) == ["done"] * 20
    pid_path = tmp_path / "long.pid"
    long_running = hold_until.options(num_cpus=2, max_retries=0).remote(str(pid_path), str(tmp_path / "never"))
    worker_pid = wait_for(lambda: _read_pid(pid_path), 30)
    behind = _pipeline_behind(worker_pid, quick)

    shoal.cancel(long_running, force=True)

    with pytest.raises(exceptions.TaskCancelledError):
        shoal.get(long_running, timeout=GET_TIMEOUT_S)
    wait_for(lambda: not _alive(worker_pid), 30)
    assert shoal.get(behind, timeout=GET_TIMEOUT_S) == ["done"] * len(behind)


def test_a_discarded_result_is_freed_once_though_its_worker_exits_later(cluster):
    size_bytes = 4 * 1024 * 1024
    shoal.get([where.remote() for _ in range(4)], timeout=GET_TIMEOUT_S)
    baseline = _store_used_bytes()
    worker_pid = shoal.get(report_a_result_nobody_wants.remote(size_bytes), timeout=GET_TIMEOUT_S)
    # Nobody wants the result: its block goes back at once, not when the worker exits.
    wait_for(lambda: _store_used_bytes() == baseline, 30, describe=lambda: f"{_store_used_bytes()} used")

    os.kill(worker_pid, signal.SIGKILL)  # its exit must not free the block a second time

    wait_for(lambda: worker_pid not in _worker_pids(), 30, describe=_describe_workers)
    payloads = [bytes([index]) * size_bytes for index in range(1, 4)]
    refs = [shoal.put(payload) for payload in payloads]  # first fit puts them in the freed range
    assert [shoal.get(ref, timeout=GET_TIMEOUT_S) == payload for ref, payload in zip(refs, payloads)] == [True] * 3
    used_by_puts = _store_used_bytes() - baseline
    assert 3 * size_bytes <= used_by_puts <= 3 * (size_bytes + 1024), used_by_puts  # each block counted once
    assert sorted(shoal.get([work.remote() for _ in range(10)], timeout=GET_TIMEOUT_S)) == ["done"] * 10
