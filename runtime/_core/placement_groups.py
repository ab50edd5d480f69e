"""Placement groups on a node: bundles of resources reserved together, then used by name.

Reserving a bundle moves its resources out of the node's free pool and adds them back under
bundle-specific names: `CPU_group_<i>_<pg>` for bundle i and `CPU_group_<pg>` for "any bundle".
A task scheduled into the group asks for those names instead (the client rewrites its
request), so the ordinary scheduler places it. A group that cannot be reserved yet stays
pending and is retried as resources free up; STRICT_SPREAD needs one node per bundle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .scheduling import UNIT, acquire, fits, release, to_shape

READY_SUFFIX = b"\xff\xff\xff\xfd"
PENDING, CREATED, REMOVED = "PENDING", "CREATED", "REMOVED"


def ready_object_id(placement_group_id: bytes) -> bytes:
    """The object that becomes ready (True) when the group is reserved."""
    return placement_group_id + READY_SUFFIX


def bundle_resource(name: str, placement_group_hex: str, index: int | None) -> str:
    if index is None or index < 0:
        return f"{name}_group_{placement_group_hex}"
    return f"{name}_group_{index}_{placement_group_hex}"


@dataclass
class PlacementGroupRecord:
    placement_group_id: bytes
    name: str
    bundles: list
    strategy: str
    lifetime: str | None
    owner_id: bytes
    state: str = PENDING
    created_at: float = field(default_factory=time.time)
    scheduled_at: float | None = None


class PlacementGroupTable:
    def __init__(self, scheduler, num_nodes: int = 1):
        self.scheduler = scheduler
        self.num_nodes = num_nodes
        self.groups: dict[bytes, PlacementGroupRecord] = {}
        self.pending: list[bytes] = []

    def create(self, owner_id: bytes, message) -> PlacementGroupRecord:
        record = PlacementGroupRecord(
            message.placement_group_id, message.name, [dict(b) for b in message.bundles],
            message.strategy, message.lifetime, owner_id,
        )
        self.groups[record.placement_group_id] = record
        self.pending.append(record.placement_group_id)
        return record

    def _feasible_now(self, record: PlacementGroupRecord) -> bool:
        if record.strategy == "STRICT_SPREAD" and len(record.bundles) > self.num_nodes:
            return False
        total: dict = {}
        for bundle in record.bundles:
            for name, amount in bundle.items():
                total[name] = total.get(name, 0) + amount
        return fits(self.scheduler.available, to_shape(total))

    def place_pending(self) -> list[bytes]:
        """Reserve whatever pending groups fit now; returns the ids that were reserved."""
        placed, waiting = [], []
        for placement_group_id in self.pending:
            record = self.groups.get(placement_group_id)
            if record is None or record.state != PENDING:
                continue
            if not self._feasible_now(record):
                waiting.append(placement_group_id)
                continue
            self._reserve(record)
            placed.append(placement_group_id)
        self.pending = waiting
        return placed

    def _reserve(self, record: PlacementGroupRecord) -> None:
        scheduler = self.scheduler
        pg_hex = record.placement_group_id.hex()
        for index, bundle in enumerate(record.bundles):
            shape = to_shape(bundle)
            acquire(scheduler.available, shape)
            for name, amount in shape:
                for renamed in (bundle_resource(name, pg_hex, index), bundle_resource(name, pg_hex, None)):
                    scheduler.total[renamed] = scheduler.total.get(renamed, 0) + amount
                    scheduler.available[renamed] = scheduler.available.get(renamed, 0) + amount
        record.state = CREATED
        record.scheduled_at = time.time()

    def remove(self, placement_group_id: bytes) -> PlacementGroupRecord | None:
        record = self.groups.get(placement_group_id)
        if record is None or record.state == REMOVED:
            return None
        if record.state == CREATED:
            scheduler = self.scheduler
            pg_hex = placement_group_id.hex()
            for index, bundle in enumerate(record.bundles):
                shape = to_shape(bundle)
                release(scheduler.available, shape)
                for name, _ in shape:
                    for renamed in (bundle_resource(name, pg_hex, index), bundle_resource(name, pg_hex, None)):
                        scheduler.total.pop(renamed, None)
                        scheduler.available.pop(renamed, None)
        record.state = REMOVED
        return record

    def is_member_resource(self, resource_name: str, placement_group_id: bytes) -> bool:
        return resource_name.endswith("_" + placement_group_id.hex()) and "_group_" in resource_name

    def rows(self) -> list[dict]:
        return [
            {
                "placement_group_id": record.placement_group_id.hex(),
                "name": record.name,
                "strategy": record.strategy,
                "state": record.state,
                "bundles": {index: dict(bundle) for index, bundle in enumerate(record.bundles)},
                "is_detached": record.lifetime == "detached",
                "stats": {"scheduling_state": "FINISHED" if record.state == CREATED else record.state},
            }
            for record in self.groups.values()
        ]


__all__ = ["PlacementGroupTable", "bundle_resource", "ready_object_id", "UNIT"]
