"""Placement groups on a single node: reservation, scheduling into bundles, removal."""

from __future__ import annotations

import pytest
import shoal
from shoal import exceptions
from shoal.util import placement_group, placement_group_table, remove_placement_group
from shoal.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from shoal.util.state import list_placement_groups, list_tasks


@shoal.remote
def used():
    return shoal.get_runtime_context().get_assigned_resources()


def test_reserve_run_and_remove(cluster):
    group = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK", name="pair")
    assert shoal.get(group.ready(), timeout=10) is True
    assert group.wait(5)
    assert shoal.available_resources().get("CPU", 0) == 0  # both CPUs reserved by the group
    strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=1)
    in_bundle = used.options(scheduling_strategy=strategy).remote()
    assert shoal.get(in_bundle, timeout=10) == {"CPU": 1.0}  # as in Ray: the names the task asked for
    anywhere = PlacementGroupSchedulingStrategy(group)
    assert shoal.get([used.options(scheduling_strategy=anywhere).remote() for _ in range(4)], timeout=10)
    legacy = used.options(placement_group=group, placement_group_bundle_index=0).remote()
    assert shoal.get(legacy, timeout=10) == {"CPU": 1.0}
    requested = {row.task_id: row.required_resources for row in list_tasks(limit=10_000)}
    assert requested[in_bundle.task_id().hex()] == {f"CPU_group_1_{group.id.hex()}": 1.0}
    assert requested[legacy.task_id().hex()] == {f"CPU_group_0_{group.id.hex()}": 1.0}
    table = placement_group_table(group)
    assert table["state"] == "CREATED" and table["strategy"] == "PACK" and table["name"] == "pair"
    assert any(row.name == "pair" for row in list_placement_groups())
    remove_placement_group(group)
    shoal.get(shoal.put(None))  # a round trip: the removal has been handled
    assert placement_group_table(group)["state"] == "REMOVED"
    assert shoal.available_resources()["CPU"] == 2


def test_group_waits_for_resources_then_is_created(cluster):
    first = placement_group([{"CPU": 2}])
    assert first.wait(10)
    second = placement_group([{"CPU": 2}], strategy="STRICT_PACK")
    assert not second.wait(0.5)
    remove_placement_group(first)
    assert second.wait(10)
    remove_placement_group(second)


def test_strict_spread_needs_a_node_per_bundle(cluster):
    group = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    assert not group.wait(0.5)
    assert placement_group_table(group)["state"] == "PENDING"
    remove_placement_group(group)
    with pytest.raises(exceptions.PlacementGroupSchedulingError):
        shoal.get(group.ready(), timeout=10)


def test_actor_in_a_group_goes_with_it(cluster):
    group = placement_group([{"CPU": 1}])
    assert group.wait(10)

    @shoal.remote(num_cpus=1)
    class Member:
        def ping(self):
            return "pong"

    member = Member.options(scheduling_strategy=PlacementGroupSchedulingStrategy(group, 0)).remote()
    assert shoal.get(member.ping.remote(), timeout=10) == "pong"
    remove_placement_group(group)
    with pytest.raises(exceptions.RayActorError):
        shoal.get(member.ping.remote(), timeout=10)


def test_bad_placement_groups(cluster):
    with pytest.raises(ValueError, match="strategy"):
        placement_group([{"CPU": 1}], strategy="EVERYWHERE")
    with pytest.raises(ValueError, match="bundles"):
        placement_group([])
    with pytest.raises(ValueError, match="bundle 0"):
        placement_group([{"CPU": -1}])
    with pytest.raises(ValueError, match="no resources"):
        placement_group([{"CPU": 0}])
    with pytest.warns(UserWarning, match="cannot fit"):
        group = placement_group([{"CPU": 64}])
    group_strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=5)
    with pytest.raises(ValueError, match="bundle_index"):
        used.options(scheduling_strategy=group_strategy).remote()
    remove_placement_group(group)
