"""(1) Workers and (2) the worker template SIGKILLed while a task job runs: every result comes back
right (the node retries what the dead workers held) and nothing waits forever.

Kills are paced by the job's progress (the k-th kill once k/(kills+1) of the job is done), so
they land while tasks run whatever the machine's speed. Each test has its own 2-CPU cluster.
"""

from __future__ import annotations

import random
import time

import shoal

from tests.reliability import faults
from tests.waiting import wait_for

JOB_TIMEOUT_S = 120.0  # a whole job; it takes seconds when nothing is wrong
KILL_TIMEOUT_S = 10.0  # to find a worker to kill while a job runs
BUSY_WAIT_S = 5.0
RECOVERY_TIMEOUT_S = 20.0  # for the rest of a job after its template died: a second or two when it recovers


@shoal.remote
def square(index):
    time.sleep(0.001)  # long enough that a kill finds workers in the middle of tasks
    return index, index * index


def ref_ready(ref) -> bool:
    return bool(shoal.wait([ref], timeout=0, fetch_local=False)[0])


def _is_square(index, value) -> bool:
    return value == (index, index * index)


def test_worker_kills_during_a_task_job(node_pid, chaos_scale, figures):
    rng = random.Random(1)
    figures.input_kind = "worker SIGKILLs"
    figures.parameters = {
        "jobs": chaos_scale.worker_jobs,
        "tasks_per_job": chaos_scale.worker_tasks,
        "kills_per_job": chaos_scale.worker_kills,
    }
    for _ in range(chaos_scale.worker_jobs):
        refs = [square.remote(index) for index in range(chaos_scale.worker_tasks)]
        for kill in range(1, chaos_scale.worker_kills + 1):
            faults.pace(refs, kill / (chaos_scale.worker_kills + 1), JOB_TIMEOUT_S)

            def kill_one() -> bool:  # a worker may be between tasks, or just replaced: pick again
                victim = faults.pick(rng, faults.busy_worker_pids()) or faults.pick(rng, faults.worker_pids(node_pid))
                return victim is not None and faults.sigkill(victim)

            wait_for(kill_one, KILL_TIMEOUT_S, describe=lambda: f"no worker of node {node_pid} to kill")
            figures.inputs += 1
        tally = faults.check_results(refs, _is_square, JOB_TIMEOUT_S)
        figures.results += tally.checked
        figures.correct += tally.correct
        figures.hangs += tally.hangs
        if tally.correct != len(refs):
            figures.note(tally.summary())
    figures.crashes += 0 if faults.alive(node_pid) else 1
    assert figures.inputs == chaos_scale.worker_jobs * chaos_scale.worker_kills, "some kills found no worker"
    assert figures.correct == figures.results == chaos_scale.worker_jobs * chaos_scale.worker_tasks, figures.notes
    assert figures.crashes == 0 and figures.hangs == 0


def test_a_worker_kill_fails_only_the_task_it_was_running(node_pid, chaos_scale, figures):
    """Without retries a kill may cost the task the worker was running, never the ones queued behind it."""
    rng = random.Random(2)
    tasks = chaos_scale.worker_tasks // 4
    figures.input_kind = "worker SIGKILLs"
    figures.parameters = {"tasks": tasks, "kills": chaos_scale.worker_kills, "max_retries": 0}
    refs = [square.options(max_retries=0).remote(index) for index in range(tasks)]
    for kill in range(1, chaos_scale.worker_kills + 1):
        faults.pace(refs, kill / (chaos_scale.worker_kills + 1), JOB_TIMEOUT_S)
        busy = faults.poll(faults.busy_worker_pids, BUSY_WAIT_S)  # a worker between two tasks is not busy
        victim = faults.pick(rng, faults.busy_worker_pids()) if busy else None
        if victim is not None and faults.sigkill(victim):
            figures.inputs += 1
        elif not any("no busy worker" in note for note in figures.notes):
            figures.note(f"kill {kill}: no busy worker ({sum(ref_ready(ref) for ref in refs)} of {tasks} done)")
    tally = faults.check_results(refs, _is_square, JOB_TIMEOUT_S)
    figures.results, figures.correct, figures.hangs = tally.checked, tally.correct, tally.hangs
    figures.note(tally.summary())
    figures.crashes = 0 if faults.alive(node_pid) else 1
    assert figures.inputs == chaos_scale.worker_kills, figures.notes
    assert set(tally.errors) <= {"WorkerCrashedError"} and not tally.wrong, tally.summary()
    assert tally.correct >= len(refs) - figures.inputs, tally.summary()  # one running task per kill at most
    assert figures.crashes == 0 and figures.hangs == 0


def test_template_kills_during_a_task_job(node_pid, chaos_scale, figures):
    figures.input_kind = "template SIGKILLs"
    figures.parameters = {"tasks": chaos_scale.template_tasks, "template_kills": chaos_scale.template_kills}
    refs = [square.remote(index) for index in range(chaos_scale.template_tasks)]
    final_wait_s = RECOVERY_TIMEOUT_S
    for kill in range(1, chaos_scale.template_kills + 1):
        fraction = kill / (chaos_scale.template_kills + 1)
        if faults.pace(refs, fraction, JOB_TIMEOUT_S if kill == 1 else RECOVERY_TIMEOUT_S) < int(len(refs) * fraction):
            figures.note(f"the job did not reach {fraction:.0%} within {RECOVERY_TIMEOUT_S:g} s of kill {kill - 1}")
            final_wait_s = 1.0  # it already had its chance
            break
        for template_pid in faults.template_pids(node_pid):
            if faults.sigkill(template_pid):  # its workers die with it (PR_SET_PDEATHSIG)
                figures.inputs += 1
    tally = faults.check_results(refs, _is_square, final_wait_s)
    figures.results, figures.correct, figures.hangs = tally.checked, tally.correct, tally.hangs
    if tally.correct != len(refs):
        figures.note(tally.summary())
    figures.crashes = 0 if faults.alive(node_pid) else 1
    assert tally.correct == len(refs), figures.notes
    assert figures.inputs == chaos_scale.template_kills
    assert figures.crashes == 0
    # The node runs new work on a new template's workers.
    assert shoal.get(square.remote(7), timeout=30) == (7, 49)
    assert faults.template_pids(node_pid)
