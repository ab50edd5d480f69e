"""Placement groups: reserve bundles of resources together, then run tasks and actors in them.

pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
shoal.get(pg.ready())
task.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
"""

from __future__ import annotations

import math
import numbers
import warnings

from .. import api
from .._core import feasibility, session
from .._core.ids import PlacementGroupID
from .._core.placement_groups import bundle_resource, ready_object_id
from .._core.protocol import CreatePlacementGroup, RemovePlacementGroup
from ..object_ref import ObjectRef

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class PlacementGroup:
    """A handle to a placement group (picklable: pass it to tasks and actors)."""

    def __init__(self, placement_group_id: bytes, bundles: list, strategy: str, name: str = ""):
        self._id = placement_group_id
        self.bundle_specs = [dict(b) for b in bundles]
        self.strategy = strategy
        self.name = name

    @property
    def id(self) -> PlacementGroupID:
        return PlacementGroupID(self._id)

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> ObjectRef:
        """An ObjectRef that resolves (to True) once every bundle is reserved."""
        return ObjectRef(ready_object_id(self._id))

    def wait(self, timeout_seconds: float = 30) -> bool:
        """Wait up to `timeout_seconds` for the group to be reserved; True if it is."""
        ready, _ = api.wait([self.ready()], timeout=timeout_seconds)
        return bool(ready)

    def __reduce__(self):
        return (PlacementGroup, (self._id, self.bundle_specs, self.strategy, self.name))

    def __eq__(self, other) -> bool:
        return isinstance(other, PlacementGroup) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return f"PlacementGroup({self._id.hex()}, strategy={self.strategy}, bundles={self.bundle_specs})"


def _check_bundles(bundles) -> list:
    if not isinstance(bundles, (list, tuple)) or not bundles:
        raise ValueError("bundles must be a non-empty list of resource dicts, e.g. [{'CPU': 1}]")
    checked = []
    for index, bundle in enumerate(bundles):
        if not isinstance(bundle, dict) or not bundle:
            raise ValueError(f"bundle {index} must be a non-empty dict of resource amounts, got {bundle!r}")
        for name, amount in bundle.items():
            if not isinstance(name, str):
                raise ValueError(f"bundle {index}: resource names must be strings, got {name!r}")
            if (
                isinstance(amount, bool)
                or not isinstance(amount, numbers.Real)
                or not math.isfinite(amount)
                or amount < 0
            ):
                raise ValueError(f"bundle {index}: {name} must be a number >= 0, got {amount!r}")
        if not any(amount > 0 for amount in bundle.values()):
            raise ValueError(f"bundle {index} asks for no resources: {bundle!r}")
        checked.append({name: float(amount) for name, amount in bundle.items()})
    return checked


def placement_group(
    bundles,
    strategy: str = "PACK",
    name: str = "",
    lifetime: str | None = None,
    _soft_target_node_id=None,
    bundle_label_selector=None,
) -> PlacementGroup:
    """Reserve `bundles` of resources with a placement `strategy`.

    Args:
        bundles: A list of resource dicts, e.g. [{"CPU": 1, "GPU": 1}, {"CPU": 2}].
        strategy: PACK, SPREAD, STRICT_PACK or STRICT_SPREAD.
        name: An optional name (shown by the state API).
        lifetime: None (removed when this driver exits) or "detached".

    Returns:
        The PlacementGroup; `pg.ready()` resolves when it is reserved.

    Raises:
        ValueError: Bad bundles, strategy or lifetime.
    """
    checked = _check_bundles(bundles)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if lifetime not in (None, "detached"):
        raise ValueError(f"lifetime must be None or 'detached', got {lifetime!r}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    client = session.client()
    here = client.node_info.resources
    nodes = None
    for index, bundle in enumerate(checked):
        if all(here.get(k, 0) >= v for k, v in bundle.items()):
            continue
        if nodes is None:  # only asked when this node cannot hold a bundle
            nodes = [n["Resources"] for n in api.nodes() if n.get("Alive")]
        missing = feasibility.missing_on_every_node(bundle, nodes)
        if missing:
            warnings.warn(
                f"placement group bundle {index} {bundle} cannot fit on any node (missing {missing}); "
                "the group stays pending until such a node joins.",
                stacklevel=2,
            )
    placement_group_id = session.next_task_id()  # starts with the owner node's tag, like task ids
    group = PlacementGroup(placement_group_id, checked, strategy, name)
    client.send(CreatePlacementGroup(placement_group_id, name, checked, strategy, lifetime))
    return group


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Release a placement group's resources; actors in it are stopped."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group() expects a PlacementGroup, got {type(placement_group).__name__}")
    session.client().send(RemovePlacementGroup(placement_group._id))


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict:
    """Information about one placement group, or all of them keyed by id."""
    from .state import query

    rows = {row["placement_group_id"]: row for row in query("placement_groups")}
    if placement_group is None:
        return rows
    return rows.get(placement_group._id.hex(), {})


def get_current_placement_group() -> PlacementGroup | None:
    """The placement group the current task runs in (None: child capture is not supported yet)."""
    return None


def rewrite_resources(resources: dict, group: PlacementGroup, bundle_index: int) -> dict:
    """A task's resource request, redirected into a placement group's bundle(s)."""
    if not isinstance(group, PlacementGroup):
        raise TypeError(f"placement_group must be a PlacementGroup, got {type(group).__name__}")
    if not isinstance(bundle_index, int) or bundle_index < -1 or bundle_index >= group.bundle_count:
        raise ValueError(
            f"placement_group_bundle_index must be -1 or in [0, {group.bundle_count - 1}], got {bundle_index!r}"
        )
    pg_hex = group._id.hex()
    index = None if bundle_index == -1 else bundle_index
    return {bundle_resource(name, pg_hex, index): amount for name, amount in resources.items()}


__all__ = [
    "PlacementGroup",
    "get_current_placement_group",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
]
