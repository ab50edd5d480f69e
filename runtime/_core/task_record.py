"""A task's entry in the node manager's task table, and the states it passes through.

Pure data: the node manager and its mixins move a record from WAITING (arguments not ready)
to QUEUED, RUNNING and DONE. No sockets, no threads, no wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .protocol import TaskSpec

WAITING, QUEUED, RUNNING, DONE = "WAITING", "QUEUED", "RUNNING", "DONE"


@dataclass
class TaskRecord:
    spec: TaskSpec
    retries_left: int
    state: str = WAITING
    worker_id: bytes | None = None
    cancelled: bool = False
    force_cancelled: bool = False
    children: list = field(default_factory=list)
    submitted_at: float = 0.0
    started_at: float = 0.0
    started_wall: float = 0.0
    node: bytes | None = None  # forwarded: the node running it
    origin: bytes | None = None  # a guest: the node that owns it and wants its results
    local_only: bool = False  # placed here once; do not move it again
    keep_args: bool = False  # its arguments stay held as lineage for rebuilding its values
    reconstruction: bool = False
