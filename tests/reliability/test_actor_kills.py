"""(3) Actor processes SIGKILLed during a stream of calls: actors with max_restarts and
max_task_retries come back, and every call's result is present and correct.

The calls are pure functions of their argument (an actor's state starts over after a restart),
so each result can be checked exactly; the actor's pid in the result shows the restarts.
"""

from __future__ import annotations

import functools
import os
import random
import time

import shoal

from tests.reliability import faults

JOB_TIMEOUT_S = 120.0
KILL_WAIT_S = 10.0


@shoal.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0.5)
class Squarer:
    def square(self, index):
        time.sleep(0.001)
        return index, index * index, os.getpid()


def _actor_rows() -> list:
    from shoal.util import state

    return state.list_actors(limit=10_000)


def _live_actor_pids(excluded: set) -> list[int]:
    """Pids of the workers hosting actors. From the worker table: the actor table's pid is None
    when the actor's worker registered before the node read the template's word of its pid."""
    from shoal.util import state

    rows = state.list_workers(filters=[("state", "=", "ACTOR")], limit=10_000)
    return [row["pid"] for row in rows if row["pid"] and row["pid"] not in excluded]


def test_actor_kills_with_restarts_keep_every_call(node_pid, chaos_scale, figures):
    rng = random.Random(3)
    figures.input_kind = "actor SIGKILLs"
    figures.parameters = {
        "actors": chaos_scale.actors,
        "calls": chaos_scale.actor_calls,
        "kills": chaos_scale.actor_kills,
        "max_restarts": -1,
        "max_task_retries": -1,
    }
    actors = [Squarer.remote() for _ in range(chaos_scale.actors)]
    refs = [actors[index % len(actors)].square.remote(index) for index in range(chaos_scale.actor_calls)]
    killed = set()
    for kill in range(1, chaos_scale.actor_kills + 1):
        faults.pace(refs, kill / (chaos_scale.actor_kills + 1), JOB_TIMEOUT_S)
        # Right after a kill every actor may be restarting: give one the time to come back.
        live = faults.poll(functools.partial(_live_actor_pids, killed), KILL_WAIT_S)
        victim = faults.pick(rng, _live_actor_pids(killed)) if live else None
        if victim is not None and faults.sigkill(victim):
            killed.add(victim)
            figures.inputs += 1
        elif not figures.notes:
            figures.note(f"kill {kill} found no actor worker; the actors: {[dict(row) for row in _actor_rows()]}")
    tally = faults.check_results(refs, lambda index, value: value[:2] == (index, index * index), JOB_TIMEOUT_S)
    figures.results, figures.correct, figures.hangs = tally.checked, tally.correct, tally.hangs
    figures.note(tally.summary())
    figures.crashes = 0 if faults.alive(node_pid) else 1
    assert figures.inputs == chaos_scale.actor_kills, figures.notes
    assert tally.correct == len(refs), tally.summary()
    assert figures.crashes == 0
    # Calls ran in processes that were killed and in their replacements.
    pids = {value[2] for value in shoal.get(refs, timeout=JOB_TIMEOUT_S)}
    assert pids & killed and pids - killed
    unknown = [row["actor_id"] for row in _actor_rows() if row["state"] == "ALIVE" and not row["pid"]]
    if unknown:
        figures.note(f"list_actors gives no pid for {len(unknown)} live actor(s)")
