"""get_runtime_context() inside tasks and actors: the driver's job id, and the resources held.

One 2-CPU, 2-GPU (fake), custom=1 cluster for the module (tests/integration/conftest.py).
"""

from __future__ import annotations

import os
import threading

import shoal
from shoal.util import placement_group, remove_placement_group
from shoal.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from shoal.util.state import list_actors, list_jobs, list_tasks

from tests.waiting import wait_for

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
def assigned():
    return shoal.get_runtime_context().get_assigned_resources()


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


def _floats(resources: dict) -> bool:
    return all(type(amount) is float for amount in resources.values())


def _release(actor) -> None:
    shoal.kill(actor)
    wait_for(lambda: shoal.available_resources().get("CPU") == 2, TIMEOUT_S, lambda: str(shoal.available_resources()))


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


# -- assigned resources ------------------------------------------------------------------------


def test_task_resources(cluster):
    cases = [
        (assigned, {"CPU": 1.0}),
        (assigned.options(num_cpus=0), {}),
        (assigned.options(num_cpus=0.5), {"CPU": 0.5}),
        (assigned.options(num_cpus=2, resources={"custom": 1}), {"CPU": 2.0, "custom": 1.0}),
        (assigned.options(num_gpus=1), {"CPU": 1.0, "GPU": 1.0}),
        (assigned.options(num_cpus=0, num_gpus=2), {"GPU": 2.0}),
    ]
    for task, expected in cases:
        resources = shoal.get(task.remote(), timeout=TIMEOUT_S)
        assert resources == expected and _floats(resources)


def test_actor_holds_what_it_asked_for_in_constructor_and_methods(cluster):
    cases = [
        (Reporter.options(num_cpus=2), {"CPU": 2.0}),
        (Reporter, {}),  # an actor holds no CPU by default (it needs one only to be placed)
        (Reporter.options(num_gpus=1), {"GPU": 1.0}),
        (Reporter.options(num_cpus=1, num_gpus=2, resources={"custom": 1}), {"CPU": 1.0, "GPU": 2.0, "custom": 1.0}),
        (Reporter.options(num_cpus=1, max_concurrency=3), {"CPU": 1.0}),
        (AsyncReporter.options(num_cpus=1), {"CPU": 1.0}),
    ]
    for actor_class, expected in cases:
        actor = actor_class.remote()
        if hasattr(actor, "construction"):
            assert shoal.get(actor.construction.remote(), timeout=TIMEOUT_S)[1] == expected
        resources = shoal.get(actor.now.remote(), timeout=TIMEOUT_S)[1]
        assert resources == expected and _floats(resources)
        _release(actor)


def test_placement_group_bundles_report_plain_names(cluster):
    group = placement_group([{"CPU": 1}, {"CPU": 1, "GPU": 1, "custom": 1}])
    assert group.wait(TIMEOUT_S)
    try:
        in_bundle = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=1)
        task = assigned.options(num_cpus=1, num_gpus=1, resources={"custom": 1}, scheduling_strategy=in_bundle)
        assert shoal.get(task.remote(), timeout=TIMEOUT_S) == {"CPU": 1.0, "GPU": 1.0, "custom": 1.0}
        anywhere = assigned.options(num_cpus=1, scheduling_strategy=PlacementGroupSchedulingStrategy(group))
        assert shoal.get(anywhere.remote(), timeout=TIMEOUT_S) == {"CPU": 1.0}
        bundle_zero = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0)
        member = Reporter.options(num_cpus=1, scheduling_strategy=bundle_zero).remote()
        assert shoal.get(member.construction.remote(), timeout=TIMEOUT_S)[1] == {"CPU": 1.0}
        assert shoal.get(member.now.remote(), timeout=TIMEOUT_S)[1] == {"CPU": 1.0}
        shoal.kill(member)
    finally:
        remove_placement_group(group)
    wait_for(lambda: shoal.available_resources().get("CPU") == 2, TIMEOUT_S, lambda: str(shoal.available_resources()))
