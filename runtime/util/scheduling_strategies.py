"""Scheduling strategies passed as `scheduling_strategy=` to tasks and actors."""

from __future__ import annotations


class NodeAffinitySchedulingStrategy:
    """Run on one node, given by its hex id (`shoal.get_runtime_context().get_node_id()`).

    Args:
        node_id: The node's id as a hex string.
        soft: If the node is gone or unknown, run anywhere instead of failing.
    """

    _scheduling_kind = "NODE_AFFINITY"

    def __init__(
        self, node_id: str, soft: bool, _spill_on_unavailable: bool = False, _fail_on_unavailable: bool = False
    ):
        if not isinstance(node_id, str):
            raise TypeError(f"node_id must be a hex string, got {type(node_id).__name__}")
        try:
            bytes.fromhex(node_id)
        except ValueError:
            raise ValueError(f"node_id must be a hex string, got {node_id!r}") from None
        if not isinstance(soft, bool):
            raise TypeError(f"soft must be a bool, got {type(soft).__name__}")
        self.node_id = node_id
        self.soft = soft
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def _wire(self) -> list:
        return ["NODE_AFFINITY", self.node_id, self.soft]

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


class PlacementGroupSchedulingStrategy:
    """Run inside a placement group: in bundle `placement_group_bundle_index`, or any (-1)."""

    _scheduling_kind = "PLACEMENT_GROUP"

    def __init__(
        self, placement_group, placement_group_bundle_index: int = -1, placement_group_capture_child_tasks=None
    ):
        from .placement_group import PlacementGroup

        if not isinstance(placement_group, PlacementGroup):
            raise TypeError(f"placement_group must be a PlacementGroup, got {type(placement_group).__name__}")
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def _wire(self) -> None:
        return None  # resolved on the client: the request is rewritten into the group's resources

    def __repr__(self) -> str:
        return f"PlacementGroupSchedulingStrategy({self.placement_group!r}, {self.placement_group_bundle_index})"


__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]
