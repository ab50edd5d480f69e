"""get_runtime_context() inside tasks and actors: the driver's job id.

One 2-CPU, 2-GPU (fake), custom=1 cluster for the module (tests/integration/conftest.py).
"""

from __future__ import annotations

import os
import threading

import shoal
from shoal.util.state import list_actors, list_jobs, list_tasks

TIMEOUT_S = 60


def _context():
    context = shoal.get_runtime_context()
    return context.get_job_id(), context.get_task_id()


@shoal.remote
def job_and_task():
    return _context()


@shoal.remote
def nested_job_and_tasks(depth: int):
    """Its own (job id, task id), then those of the tasks it started, innermost last."""
    if depth == 0:
        return [_context()]
    inner = nested_job_and_tasks.remote(depth - 1)
    return [_context(), *shoal.get(inner)]


@shoal.remote
class Reporter:
    def __init__(self):
        context = shoal.get_runtime_context()
        self.created_with = (context.get_job_id(), context.get_assigned_resources())

    def construction(self):
        return self.created_with

    def now(self):
        context = shoal.get_runtime_context()
        return context.get_job_id(), context.get_assigned_resources()

    def from_own_thread(self):
        seen = []
        thread = threading.Thread(target=lambda: seen.append(shoal.get_runtime_context().get_job_id()))
        thread.start()
        thread.join()
        return seen[0]

    def from_task_it_starts(self):
        return shoal.get(job_and_task.remote())[0]


@shoal.remote
class AsyncReporter:
    async def now(self):
        context = shoal.get_runtime_context()
        return context.get_job_id(), context.get_assigned_resources()


# -- job id ------------------------------------------------------------------------------------


def test_driver_job_id_is_a_job_id_in_hex(cluster):
    job_id = shoal.get_runtime_context().get_job_id()
    assert len(job_id) == 8 and int(job_id, 16) >= 0


def test_tasks_and_nested_tasks_carry_the_driver_job_id(cluster):
    job_id = shoal.get_runtime_context().get_job_id()
    assert shoal.get(job_and_task.remote(), timeout=TIMEOUT_S)[0] == job_id
    levels = shoal.get(nested_job_and_tasks.remote(2), timeout=TIMEOUT_S)
    assert [level_job for level_job, _ in levels] == [job_id] * 3


def test_actors_carry_the_driver_job_id(cluster):
    job_id = shoal.get_runtime_context().get_job_id()
    plain = Reporter.remote()
    threaded = Reporter.options(max_concurrency=2).remote()
    asynchronous = AsyncReporter.remote()
    for actor in (plain, threaded):
        assert shoal.get(actor.construction.remote(), timeout=TIMEOUT_S)[0] == job_id
        assert shoal.get(actor.now.remote(), timeout=TIMEOUT_S)[0] == job_id
        assert shoal.get(actor.from_own_thread.remote(), timeout=TIMEOUT_S) == job_id
        assert shoal.get(actor.from_task_it_starts.remote(), timeout=TIMEOUT_S) == job_id
    assert shoal.get(asynchronous.now.remote(), timeout=TIMEOUT_S)[0] == job_id
    for actor in (plain, threaded, asynchronous):
        shoal.kill(actor)


def test_state_api_reports_the_same_job_id(cluster):
    job_id = shoal.get_runtime_context().get_job_id()
    running = [job for job in list_jobs() if job.status == "RUNNING" and job.driver_pid == os.getpid()]
    assert [job.job_id for job in running] == [job_id]
    levels = shoal.get(nested_job_and_tasks.remote(1), timeout=TIMEOUT_S)
    rows = {row.task_id: row for row in list_tasks(limit=10_000)}
    assert [rows[task_id].job_id for _, task_id in levels] == [job_id, job_id]
    actor = Reporter.remote()
    shoal.get(actor.now.remote(), timeout=TIMEOUT_S)
    actor_row = next(row for row in list_actors() if row.actor_id == actor._actor_id.hex())
    assert actor_row.job_id == job_id
    shoal.kill(actor)
