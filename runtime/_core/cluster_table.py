"""Pure view of the cluster's nodes from one node manager, and where a task should run.

The head keeps the authoritative table (who joined, when each node last sent a heartbeat)
and sends it to every node each heartbeat interval; every node keeps this copy to choose a
node for work it cannot or should not run itself (spillback). Free resources of other nodes
are as of their last heartbeat, lowered optimistically as work is sent to them, so a burst
of tasks does not all land on the node that looked free.

No sockets, no clock: times are arguments.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from .scheduling import Shape, fits

LOCAL = None  # `choose` result: run here


@dataclass
class NodeInfo:
    node_id: bytes
    endpoint: str
    node_ip: str
    total: dict  # milli-units, as the scheduler keeps them
    available: dict
    alive: bool = True
    is_head: bool = False
    object_store_bytes: int = 0
    object_store_used_bytes: int = 0
    num_workers: int = 0
    last_seen: float = 0.0
    started_at: float = 0.0
    extra: dict = field(default_factory=dict)
    data_endpoint: str = ""  # where it serves object chunks (plain TCP, requests signed)

    def row(self) -> dict:
        """The wire form (NodeTable entries)."""
        return {
            "node_id": self.node_id,
            "endpoint": self.endpoint,
            "node_ip": self.node_ip,
            "total": self.total,
            "available": self.available,
            "alive": self.alive,
            "is_head": self.is_head,
            "object_store_bytes": self.object_store_bytes,
            "object_store_used_bytes": self.object_store_used_bytes,
            "num_workers": self.num_workers,
            "started_at": self.started_at,
            "data_endpoint": self.data_endpoint,
        }

    def ray_row(self, total: dict) -> dict:
        """This node in the shape of Ray's `ray.nodes()` entries."""
        return {
            "NodeID": self.node_id.hex(),
            "Alive": self.alive,
            "NodeManagerAddress": self.node_ip,
            "NodeManagerHostname": self.node_ip,
            "NodeManagerPort": int(self.endpoint.rpartition(":")[2] or 0) if self.endpoint else 0,
            "ObjectStoreSocketName": "",
            "Resources": total if self.alive else {},
            "alive": self.alive,
            "IsHeadNode": self.is_head,
        }

    @classmethod
    def from_row(cls, row: dict) -> NodeInfo:
        return cls(
            bytes(row["node_id"]),
            row["endpoint"],
            row["node_ip"],
            dict(row["total"]),
            dict(row["available"]),
            bool(row["alive"]),
            bool(row["is_head"]),
            int(row["object_store_bytes"]),
            int(row["object_store_used_bytes"]),
            int(row["num_workers"]),
            started_at=float(row["started_at"]),
            data_endpoint=str(row.get("data_endpoint", "")),
        )


class ClusterTable:
    """The nodes of the cluster as one node sees them."""

    def __init__(self, self_id: bytes):
        self.self_id = self_id
        self.nodes: dict[bytes, NodeInfo] = {}
        self._spread = itertools.count()

    # -- membership -----------------------------------------------------------------------

    def upsert(self, info: NodeInfo) -> None:
        self.nodes[info.node_id] = info

    def mark_dead(self, node_id: bytes) -> bool:
        """True if the node was alive until now."""
        info = self.nodes.get(node_id)
        if info is None or not info.alive:
            return False
        info.alive = False
        info.available = {}
        return True

    def alive(self) -> list[NodeInfo]:
        return [n for n in self.nodes.values() if n.alive]

    def peers(self) -> list[NodeInfo]:
        return [n for n in self.nodes.values() if n.alive and n.node_id != self.self_id]

    def is_alive(self, node_id: bytes) -> bool:
        info = self.nodes.get(node_id)
        return info is not None and info.alive

    def by_tag(self, tag: bytes) -> NodeInfo | None:
        for info in self.nodes.values():
            if info.node_id.startswith(tag):
                return info
        return None

    def find_hex(self, node_hex: str) -> NodeInfo | None:
        try:
            return self.nodes.get(bytes.fromhex(node_hex))
        except ValueError:
            return None

    # -- placement ------------------------------------------------------------------------

    def feasible(self, shape: Shape) -> list[NodeInfo]:
        return [n for n in self.alive() if fits(n.total, shape)]

    def take(self, node_id: bytes, shape: Shape) -> None:
        """Work was sent to `node_id`: count its resources as used until its next heartbeat."""
        info = self.nodes.get(node_id)
        if info is None:
            return
        for name, amount in shape:
            info.available[name] = info.available.get(name, 0) - amount

    def give_back(self, node_id: bytes, shape: Shape) -> None:
        """Work sent to `node_id` finished: its resources count as free again (up to its total)."""
        info = self.nodes.get(node_id)
        if info is None:
            return
        for name, amount in shape:
            info.available[name] = min(info.total.get(name, 0), info.available.get(name, 0) + amount)

    def choose(self, shape: Shape, strategy, local_fits_now: bool, locality: dict | None = None):
        """Where a ready task goes: LOCAL (None), a node id, or False if no node could ever run it.

        `strategy` is the task's ("SPREAD",) / ("NODE_AFFINITY", hex, soft) / None;
        `locality` maps node id -> bytes of the task's arguments stored there.
        """
        local = self.nodes.get(self.self_id)
        local_feasible = local is None or fits(local.total, shape)
        if strategy and strategy[0] == "NODE_AFFINITY":
            target = self.find_hex(strategy[1])
            if target is not None and target.alive and fits(target.total, shape):
                return LOCAL if target.node_id == self.self_id else target.node_id
            if not strategy[2]:
                return False
        candidates = self.feasible(shape)
        if not candidates:
            return LOCAL if local_feasible else False
        if strategy and strategy[0] == "SPREAD":
            # Round robin over the nodes that could run it, whatever they run now.
            ordered = sorted(candidates, key=lambda n: n.node_id)
            chosen = ordered[next(self._spread) % len(ordered)]
            return LOCAL if chosen.node_id == self.self_id else chosen.node_id
        if locality:
            node_id, _ = max(locality.items(), key=lambda item: item[1])
            holder = self.nodes.get(node_id)
            # Moving megabytes costs more than waiting for a slot: go there even when busy.
            if holder is not None and holder.alive and fits(holder.total, shape):
                return LOCAL if node_id == self.self_id else node_id
        if local_feasible and (local_fits_now or local is None):
            return LOCAL
        free = [n for n in candidates if n.node_id != self.self_id and fits(n.available, shape)]
        if free:
            return max(free, key=lambda n: n.available.get("CPU", 0)).node_id
        if local_feasible:
            return LOCAL
        remote = [n for n in candidates if n.node_id != self.self_id]
        return min(remote, key=lambda n: n.node_id).node_id if remote else False

    def spill_target(self, shape: Shape) -> bytes | None:
        """A peer to take work queued here that cannot start: one with room for `shape`, or one
        whose queue is shorter than its capacity (so it never waits a round trip for the next
        task). The most free CPU wins."""

        def room(info: NodeInfo) -> dict:
            return {name: info.available.get(name, 0) + total for name, total in info.total.items()}

        free = [n for n in self.peers() if fits(room(n), shape)]
        if not free:
            return None
        return max(free, key=lambda n: n.available.get("CPU", 0)).node_id

    # -- totals ---------------------------------------------------------------------------

    def totals(self) -> tuple[dict, dict]:
        """(total, available) over live nodes, in milli-units."""
        total: dict = {}
        available: dict = {}
        for info in self.alive():
            for name, amount in info.total.items():
                total[name] = total.get(name, 0) + amount
            for name, amount in info.available.items():
                available[name] = available.get(name, 0) + max(0, amount)
        return total, available
