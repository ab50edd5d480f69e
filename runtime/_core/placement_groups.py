"""Placement groups on a node: bundles of resources reserved together, then used by name.

Reserving a bundle moves its resources out of the node's free pool and adds them back under
bundle-specific names: `CPU_group_<i>_<pg>` for bundle i and `CPU_group_<pg>` for "any bundle".
A task scheduled into the group asks for those names instead (the client rewrites its
request), so the ordinary scheduler places it. A group that cannot be reserved yet stays
pending and is retried as resources free up; STRICT_SPREAD needs one node per bundle.

In a cluster the owner of a group (the node its creator talks to) plans which node gets each
bundle from its view of the nodes' free resources and asks each node to reserve its bundles;
the group is created once every node has confirmed (cluster_peers.py does the messaging).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from .ids import TASK_ID_BYTES
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


# A group's id is made like a task id (see util/placement_group.py).
_BUNDLE_RESOURCE = re.compile(rf"(.+)_group_(?:\d+_)?[0-9a-f]{{{2 * TASK_ID_BYTES}}}")


def original_resources(resources: dict) -> dict:
    """A request as its user wrote it: `CPU_group_0_<pg>` and `CPU_group_<pg>` read as `CPU`."""
    original = {}
    for name, amount in resources.items():
        match = _BUNDLE_RESOURCE.fullmatch(name)
        original[match.group(1) if match else name] = float(amount)
    return original


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
    assignment: dict = field(default_factory=dict)  # bundle index -> node id
    awaiting: set = field(default_factory=set)  # nodes that have not confirmed their bundles


def _total(bundles) -> dict:
    total: dict = {}
    for bundle in bundles:
        for name, amount in bundle.items():
            total[name] = total.get(name, 0) + amount
    return total


def plan_bundles(bundles: list, strategy: str, nodes: list) -> dict | None:
    """Which node gets each bundle: {index: node id}, or None if the strategy cannot be met now.

    `nodes` is [(node id, available milli-units)], this node first. PACK puts every bundle on
    one node when one has room, else as few as first-fit gives; STRICT_PACK needs one node;
    SPREAD puts each bundle on a different node while there are nodes with room, then reuses
    them; STRICT_SPREAD needs a different node for every bundle.
    """
    free = {node: dict(available) for node, available in nodes}
    order = [node for node, _ in nodes]
    plan: dict = {}

    def take(index: int, node) -> None:
        acquire(free[node], to_shape(bundles[index]))
        plan[index] = node

    if strategy in ("PACK", "STRICT_PACK"):
        whole = to_shape(_total(bundles))
        for node in order:
            if fits(free[node], whole):
                return {index: node for index in range(len(bundles))}
        if strategy == "STRICT_PACK":
            return None
    spread = strategy in ("SPREAD", "STRICT_SPREAD")
    used: set = set()
    for index, bundle in enumerate(bundles):
        shape = to_shape(bundle)
        candidates = [n for n in order if fits(free[n], shape)]
        if spread:
            fresh = [n for n in candidates if n not in used]
            if fresh:
                candidates = fresh
            elif strategy == "STRICT_SPREAD":
                return None
        if not candidates:
            return None
        take(index, candidates[0])
        used.add(candidates[0])
    return plan


class PlacementGroupTable:
    """The groups this node owns, and the bundles it holds (for its own groups or others')."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.groups: dict[bytes, PlacementGroupRecord] = {}
        self.pending: list[bytes] = []
        self.hosted: dict[bytes, dict] = {}  # group id -> {bundle index: bundle} reserved here

    def create(self, owner_id: bytes, message) -> PlacementGroupRecord:
        record = PlacementGroupRecord(
            message.placement_group_id,
            message.name,
            [dict(b) for b in message.bundles],
            message.strategy,
            message.lifetime,
            owner_id,
        )
        self.groups[record.placement_group_id] = record
        self.pending.append(record.placement_group_id)
        return record

    def reserve_bundles(self, placement_group_id: bytes, bundles: dict) -> bool:
        """Reserve these bundles ({index: bundle}) here, all or none."""
        scheduler = self.scheduler
        if not fits(scheduler.available, to_shape(_total(bundles.values()))):
            return False
        pg_hex = placement_group_id.hex()
        for index, bundle in bundles.items():
            shape = to_shape(bundle)
            acquire(scheduler.available, shape)
            for name, amount in shape:
                for renamed in (bundle_resource(name, pg_hex, index), bundle_resource(name, pg_hex, None)):
                    scheduler.total[renamed] = scheduler.total.get(renamed, 0) + amount
                    scheduler.available[renamed] = scheduler.available.get(renamed, 0) + amount
        self.hosted.setdefault(placement_group_id, {}).update(bundles)
        return True

    def release_bundles(self, placement_group_id: bytes, indexes=None) -> None:
        """Give back bundles reserved here (all of the group's when `indexes` is None)."""
        hosted = self.hosted.get(placement_group_id)
        if not hosted:
            return
        scheduler = self.scheduler
        pg_hex = placement_group_id.hex()
        for index in list(hosted if indexes is None else indexes):
            bundle = hosted.pop(index, None)
            if bundle is None:
                continue
            shape = to_shape(bundle)
            release(scheduler.available, shape)
            for name, amount in shape:
                for renamed in (bundle_resource(name, pg_hex, index), bundle_resource(name, pg_hex, None)):
                    left = scheduler.total.get(renamed, 0) - amount
                    if left > 0:
                        scheduler.total[renamed] = left
                        scheduler.available[renamed] = scheduler.available.get(renamed, 0) - amount
                    else:
                        scheduler.total.pop(renamed, None)
                        scheduler.available.pop(renamed, None)
        if not hosted:
            del self.hosted[placement_group_id]

    def mark_created(self, record: PlacementGroupRecord) -> None:
        record.state = CREATED
        record.awaiting = set()
        record.scheduled_at = time.time()

    def remove(self, placement_group_id: bytes) -> PlacementGroupRecord | None:
        record = self.groups.get(placement_group_id)
        if record is None or record.state == REMOVED:
            return None
        self.release_bundles(placement_group_id)
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
                "bundles_to_node_id": {index: node.hex() for index, node in record.assignment.items()},
            }
            for record in self.groups.values()
        ]


__all__ = ["PlacementGroupTable", "bundle_resource", "original_resources", "ready_object_id", "UNIT"]
