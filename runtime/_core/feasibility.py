"""Requests no node of the cluster can meet: warned about once, then left pending, as in Ray.

Asks the cluster only when this node cannot hold a request itself, and remembers the answer
for the rest of the session (`reset()` at shutdown).
"""

from __future__ import annotations

import warnings

from . import session
from .client import CoreClient
from .protocol import ClusterInfoRequest

_warned: set = set()
_feasible_elsewhere: set = set()  # requests this node cannot meet but another node can


def cluster_info(client: CoreClient):
    """The node manager's ClusterInfoReply (resources, nodes), or RuntimeError if it is silent."""
    reply = client.request(lambda request_id: ClusterInfoRequest(request_id), timeout_s=30)
    if reply is None:
        raise RuntimeError("the shoal node manager did not answer a cluster query")
    return reply


def missing_on_every_node(wanted: dict, node_resources: list) -> dict:
    """{} if one of the nodes can hold `wanted`; else the amounts no node has (or all of it)."""
    if any(all(node.get(k, 0) >= v for k, v in wanted.items()) for node in node_resources):
        return {}
    return {k: v for k, v in wanted.items() if not any(node.get(k, 0) >= v for node in node_resources)} or wanted


def check_feasible(resources: dict, name: str, stacklevel: int = 4) -> None:
    """Warn (once per request shape) when no live node has what a task or actor asks for."""
    current = session.current()
    if current is None or not current.client.connected:
        return
    info = current.client.node_info
    # Placement-group resources appear when the group is reserved; the group warns itself.
    wanted = {k: v for k, v in resources.items() if "_group_" not in k}
    if all(info.resources.get(k, 0) >= v for k, v in wanted.items()):
        return  # this node could run it: no need to ask the cluster
    key = tuple(sorted(resources.items()))
    if key in _warned or key in _feasible_elsewhere:
        return
    alive = [node["Resources"] for node in cluster_info(current.client).nodes if node.get("Alive")]
    missing = missing_on_every_node(wanted, alive)
    if not missing:
        _feasible_elsewhere.add(key)
        return
    total: dict = {}
    for node in alive:
        for k, v in node.items():
            if not k.startswith("node:"):
                total[k] = total.get(k, 0) + v
    _warned.add(key)
    warnings.warn(
        f"Task or actor {name!r} requests {resources}, but no node in the cluster has "
        f"{missing} (cluster total: {total}). "
        "It will stay pending until a node with these resources joins the cluster.",
        stacklevel=stacklevel,
    )


def reset() -> None:
    _warned.clear()
    _feasible_elsewhere.clear()


__all__ = ["check_feasible", "cluster_info", "missing_on_every_node", "reset"]
