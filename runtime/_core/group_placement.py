"""Placement groups across nodes: planning bundles, reserving them on each node, removal.

A mixin of NodeManagerService. The node that owns a group plans which node gets each bundle
(placement_groups.plan_bundles) from the free resources in its node table, reserves its own
bundles at once and asks the other nodes for theirs (ReserveBundles). When every node has
confirmed, the group is created and its ready() object becomes True. If a node refuses (its
resources went to other work in the meantime), every bundle is given back and the group
waits for the next try. Tasks and actors that ask for a bundle's resources go to the node
holding it through the ordinary placement (the bundle names are resources of that node).
"""

from __future__ import annotations

import logging

from . import protocol
from .node_host import NodeHost
from .placement_groups import CREATED, PENDING, REMOVED, bundle_resource, plan_bundles, ready_object_id
from .protocol import ObjectValue
from .scheduling import to_shape
from .system_errors import error_value

logger = logging.getLogger(__name__)

RESERVING = "RESERVING"


class GroupPlacement(NodeHost):
    def _init_group_placement(self) -> None:
        self.group_retry: list = []  # groups refused by a node: tried again at the next tick
        self.groups_hosted_for: dict[bytes, bytes] = {}  # group id -> owner node of bundles held here
        self._peer_handlers.update(
            {
                protocol.ReserveBundles: self._on_reserve_bundles,
                protocol.BundlesReserved: self._on_bundles_reserved,
                protocol.ReleaseBundles: self._on_release_bundles,
            }
        )

    def _on_create_placement_group(self, client_id: bytes, message: protocol.CreatePlacementGroup) -> None:
        self.placement_groups.create(client_id, message)
        self.objects.hold([ready_object_id(message.placement_group_id)])  # ready() works any time

    def _on_remove_placement_group(self, client_id: bytes, message: protocol.RemovePlacementGroup) -> None:
        self._remove_placement_group(message.placement_group_id)

    def _remove_placement_group(self, placement_group_id: bytes) -> None:
        record = self.placement_groups.remove(placement_group_id)
        if record is None:
            return
        self.release_group_everywhere(record)
        ready_id = ready_object_id(placement_group_id)
        entry = self.objects.get(ready_id)
        if entry is not None and not entry.ready:
            error = error_value("placement_group_removed", None, {"name": record.name})
            self._publish(ObjectValue(ready_id, error.data, -1, 0, True, []), None)
        self._apply_frees(self.objects.unhold([ready_id]))
        # Actors placed in the group go with it, as in Ray.
        for actor in list(self.actors.actors.values()):
            if any(self.placement_groups.is_member_resource(name, placement_group_id) for name in actor.spec.placement):
                actor.exit_reason = "its placement group was removed."
                self.actors.kill(actor.spec.actor_id, no_restart=True)

    def _place_groups(self) -> None:
        table = self.placement_groups
        pending, table.pending = table.pending, []
        for placement_group_id in pending:
            record = table.groups.get(placement_group_id)
            if record is None or record.state != PENDING:
                continue
            nodes = [(self.node_id, self.scheduler.available)]
            nodes += [(info.node_id, info.available) for info in self.cluster.peers()]
            plan = plan_bundles(record.bundles, record.strategy, nodes)
            local = {i: record.bundles[i] for i, node in (plan or {}).items() if node == self.node_id}
            if plan is None or (local and not table.reserve_bundles(placement_group_id, local)):
                table.pending.append(placement_group_id)
                continue
            record.assignment = plan
            remote: dict = {}
            for index, node in plan.items():
                if node != self.node_id:
                    remote.setdefault(node, []).append(index)
            if not remote:
                self._group_created(record)
                continue
            record.state = RESERVING
            record.awaiting = set(remote)
            for node, indexes in remote.items():
                bundles = [record.bundles[i] for i in indexes]
                for bundle in bundles:
                    self.cluster.take(node, to_shape(bundle))
                self._send_peer(node, protocol.ReserveBundles(placement_group_id, indexes, bundles))

    def _group_created(self, record) -> None:
        self.placement_groups.mark_created(record)
        self._publish(ObjectValue(ready_object_id(record.placement_group_id), self._true_value, -1, 0, False, []), None)

    def _on_reserve_bundles(self, node_id: bytes, message: protocol.ReserveBundles) -> None:
        ok = self.placement_groups.reserve_bundles(
            message.placement_group_id, dict(zip(message.indexes, message.bundles))
        )
        if ok:
            self.groups_hosted_for[message.placement_group_id] = node_id
        self._send_peer(node_id, protocol.BundlesReserved(message.placement_group_id, ok))

    def _on_bundles_reserved(self, node_id: bytes, message: protocol.BundlesReserved) -> None:
        record = self.placement_groups.groups.get(message.placement_group_id)
        if record is None or record.state != RESERVING or node_id not in record.awaiting:
            if message.ok:
                self._send_peer(node_id, protocol.ReleaseBundles(message.placement_group_id))
            return
        record.awaiting.discard(node_id)
        if not message.ok:
            logger.info(
                "node %s could not reserve bundles of group %s; trying again",
                node_id.hex(),
                record.name or record.placement_group_id.hex(),
            )
            self._unreserve(record)
            record.state = PENDING
            self.group_retry.append(record.placement_group_id)
            return
        self._learn_bundles(node_id, record)
        if not record.awaiting:
            self._group_created(record)

    def _learn_bundles(self, node_id: bytes, record) -> None:
        """Count a node's new bundle resources in our table now, before its next heartbeat."""
        info = self.cluster.nodes.get(node_id)
        if info is None:
            return
        pg_hex = record.placement_group_id.hex()
        for index, node in record.assignment.items():
            if node != node_id:
                continue
            for name, amount in to_shape(record.bundles[index]):
                for renamed in (bundle_resource(name, pg_hex, index), bundle_resource(name, pg_hex, None)):
                    info.total[renamed] = info.total.get(renamed, 0) + amount
                    info.available[renamed] = info.available.get(renamed, 0) + amount

    def _unreserve(self, record) -> None:
        """Give back every bundle of a group, here and on the nodes holding them."""
        self.placement_groups.release_bundles(record.placement_group_id)
        for node in {n for n in record.assignment.values() if n != self.node_id}:
            if self.cluster.is_alive(node):
                self._send_peer(node, protocol.ReleaseBundles(record.placement_group_id))
        record.assignment = {}
        record.awaiting = set()

    def _on_release_bundles(self, node_id: bytes, message: protocol.ReleaseBundles) -> None:
        if self.groups_hosted_for.get(message.placement_group_id) == node_id:
            del self.groups_hosted_for[message.placement_group_id]
        self.placement_groups.release_bundles(message.placement_group_id)

    def _groups_housekeeping(self) -> None:
        if self.group_retry:
            self.placement_groups.pending.extend(self.group_retry)
            self.group_retry = []

    def _groups_lost_with(self, node_id: bytes) -> None:
        """A node died: bundles it held for others go; our groups with bundles there re-plan."""
        for placement_group_id, owner in list(self.groups_hosted_for.items()):
            if owner == node_id:
                del self.groups_hosted_for[placement_group_id]
                self.placement_groups.release_bundles(placement_group_id)
        for record in self.placement_groups.groups.values():
            if record.state in (CREATED, RESERVING) and node_id in record.assignment.values():
                logger.warning(
                    "group %s lost bundles on node %s; placing it again",
                    record.name or record.placement_group_id.hex(),
                    node_id.hex(),
                )
                self._unreserve(record)
                record.state = PENDING
                self.placement_groups.pending.append(record.placement_group_id)

    def release_group_everywhere(self, record) -> None:
        """Removal of a group we own: its bundles on other nodes go too."""
        for node in {n for n in record.assignment.values() if n != self.node_id}:
            if self.cluster.is_alive(node):
                self._send_peer(node, protocol.ReleaseBundles(record.placement_group_id))


__all__ = ["GroupPlacement", "REMOVED"]
