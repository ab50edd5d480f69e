"""How big the reliability scenarios run: one setting, `SHOAL_CHAOS_SCALE`, for the whole tier.

`short` (the default, what `make test` and CI run) keeps the tier to about a minute on two
cores; `full` (what `make chaos` runs) is the campaign's size and takes minutes. Every count a
scenario uses comes from the `ChaosScale` picked here, so the two forms differ only in size.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

SCALE_ENV = "SHOAL_CHAOS_SCALE"
MIB = 1024 * 1024


@dataclass(frozen=True)
class ChaosScale:
    name: str
    # (1) worker kills: jobs x tasks, SIGKILLs per job
    worker_jobs: int
    worker_tasks: int
    worker_kills: int
    # (2) template kills during one job of `template_tasks`
    template_kills: int
    template_tasks: int
    # (3) actors with restarts: calls spread over `actors`, SIGKILLs of their processes
    actors: int
    actor_calls: int
    actor_kills: int
    # (4) node kill: objects made on the worker nodes before one of them is killed
    node_objects: int
    node_object_bytes: int
    # (5) head kill: tasks in flight when the head dies
    head_tasks: int
    # (6) drivers SIGKILLed mid-job
    driver_kills: int
    # (7) raw garbage per listening port
    raw_inputs_per_port: int
    # (8) typed garbage: wrong values tried per field of every message kind; whether a batch that
    # kills the node is taken apart to name the kind and the message (seconds per death)
    wrong_values_per_field: int
    name_the_killers: bool
    # (9) pre-auth floods: connections held open, bytes of one unauthenticated frame
    held_connections: int
    big_frame_bytes: int
    # (10) store pressure: the store's size, how many times it goes through, one value's size
    store_bytes: int
    store_multiple: int
    store_value_bytes: int
    # (11) refs used after shutdown
    stale_refs: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


SHORT = ChaosScale(
    name="short",
    worker_jobs=1,
    worker_tasks=2_000,
    worker_kills=5,
    template_kills=1,
    template_tasks=1_000,
    actors=2,
    actor_calls=1_000,
    actor_kills=6,
    node_objects=24,
    node_object_bytes=256 * 1024,
    head_tasks=50,
    driver_kills=2,
    raw_inputs_per_port=150,
    wrong_values_per_field=2,
    name_the_killers=False,
    held_connections=300,
    big_frame_bytes=128 * MIB,
    store_bytes=64 * MIB,
    store_multiple=10,
    store_value_bytes=4 * MIB,
    stale_refs=200,
)

FULL = ChaosScale(
    name="full",
    worker_jobs=3,
    worker_tasks=10_000,
    worker_kills=20,
    template_kills=3,
    template_tasks=5_000,
    actors=4,
    actor_calls=5_000,
    actor_kills=20,
    node_objects=200,
    node_object_bytes=1 * MIB,
    head_tasks=500,
    driver_kills=10,
    raw_inputs_per_port=5_775,  # four ports: 23,100 inputs, the campaign's count
    wrong_values_per_field=99,  # every wrong value fuzzing.py knows
    name_the_killers=True,
    held_connections=3_000,
    big_frame_bytes=1024 * MIB,
    store_bytes=200 * MIB,
    store_multiple=10,
    store_value_bytes=8 * MIB,
    stale_refs=10_000,
)

SCALES = {scale.name: scale for scale in (SHORT, FULL)}


def current() -> ChaosScale:
    """The scale `SHOAL_CHAOS_SCALE` names (`short` when unset).

    Raises:
        ValueError: the variable names no known scale.
    """
    name = os.environ.get(SCALE_ENV, "") or SHORT.name
    try:
        return SCALES[name]
    except KeyError:
        raise ValueError(f"{SCALE_ENV}={name!r}: use one of {sorted(SCALES)}") from None
