"""The state API: list and summarize the cluster's nodes, workers, tasks, actors, objects, jobs.

Each list_* call asks the node manager for a snapshot and returns rows with Ray's field names.
Rows are dicts that also allow attribute access (`row.state` as well as `row["state"]`).
Filters are (key, "=" or "!=", value) triples, applied before the limit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from .. import api, exceptions
from .._core import session
from .._core.protocol import StateQuery

DEFAULT_LIMIT = 100
_PREDICATES = ("=", "!=")


class StateRow(dict):
    """One row of state: a dict whose keys are also attributes."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _client():
    """The running session's client; never starts a cluster (as Ray's state API, it looks
    for one started on this machine when this process has none)."""
    if not api.is_initialized():
        api.init(address="auto")
    return session.client()


def query(kind: str) -> list[dict]:
    """Every node's rows of one kind ("tasks", "nodes", ...); the list_* functions filter them."""
    client = _client()
    reply = client.request(lambda request_id: StateQuery(request_id, kind), timeout_s=30)
    if reply is None:
        raise exceptions.RaySystemError(f"the node manager did not answer a state query for {kind}")
    return reply.rows


def _select(rows: list[dict], filters: Iterable | None, limit: int, detail: bool) -> list[StateRow]:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    checks = []
    for entry in filters or ():
        if not (isinstance(entry, (tuple, list)) and len(entry) == 3 and entry[1] in _PREDICATES):
            raise ValueError(f"each filter must be (key, '=' or '!=', value), got {entry!r}")
        checks.append(entry)
    selected = []
    for row in rows:
        keep = True
        for key, predicate, value in checks:
            if key not in row:
                raise ValueError(f"cannot filter on {key!r}; fields are {sorted(row)}")
            matches = str(row[key]).lower() == str(value).lower()
            if matches != (predicate == "="):
                keep = False
                break
        if keep:
            selected.append(StateRow(row))
            if len(selected) >= limit:
                break
    return selected


def list_nodes(filters=None, limit: int = DEFAULT_LIMIT, detail: bool = False, **_) -> list[StateRow]:
    """Nodes with their resources and object store use."""
    return _select(query("nodes"), filters, limit, detail)


def list_workers(filters=None, limit: int = DEFAULT_LIMIT, detail: bool = False, **_) -> list[StateRow]:
    """Worker processes: pid, state (IDLE, BUSY, BLOCKED, ACTOR, STARTING)."""
    return _select(query("workers"), filters, limit, detail)


def list_tasks(filters=None, limit: int = DEFAULT_LIMIT, detail: bool = False, **_) -> list[StateRow]:
    """Tasks, running and recently finished (the last 10,000 by default)."""
    return _select(query("tasks"), filters, limit, detail)


def list_actors(filters=None, limit: int = DEFAULT_LIMIT, detail: bool = False, **_) -> list[StateRow]:
    """Actors with their state (PENDING_CREATION, STARTING, ALIVE, DEAD), name and pid."""
    return _select(query("actors"), filters, limit, detail)


def list_objects(filters=None, limit: int = DEFAULT_LIMIT, detail: bool = False, **_) -> list[StateRow]:
    """Objects in the store: size, where they live (INLINE, SHARED_MEMORY, SPILLED), references."""
    return _select(query("objects"), filters, limit, detail)


def list_jobs(filters=None, limit: int = DEFAULT_LIMIT, detail: bool = False, **_) -> list[StateRow]:
    """Drivers that have connected, with their status."""
    return _select(query("jobs"), filters, limit, detail)


def list_placement_groups(filters=None, limit: int = DEFAULT_LIMIT, detail: bool = False, **_) -> list[StateRow]:
    """Placement groups (none until placement groups are created)."""
    return _select(query("placement_groups"), filters, limit, detail)


def _summary(rows: list[dict], key: str) -> dict:
    by_name: dict = {}
    for row in rows:
        entry = by_name.setdefault(row.get("name") or row.get("class_name") or "?", {"state_counts": Counter()})
        entry["state_counts"][row[key]] += 1
    return {name: {"state_counts": dict(v["state_counts"])} for name, v in by_name.items()}


def summarize_tasks(**_) -> dict:
    """Task counts by function name and state."""
    rows = query("tasks")
    return {"cluster": {"summary": _summary(rows, "state"), "total_tasks": len(rows)}}


def summarize_actors(**_) -> dict:
    """Actor counts by class and state."""
    rows = query("actors")
    summary: dict = {}
    for row in rows:
        entry = summary.setdefault(row["class_name"], {"state_counts": Counter()})
        entry["state_counts"][row["state"]] += 1
    return {
        "cluster": {
            "summary": {k: {"state_counts": dict(v["state_counts"])} for k, v in summary.items()},
            "total_actors": len(rows),
        }
    }


def summarize_objects(**_) -> dict:
    """Object counts and bytes by location."""
    rows = query("objects")
    by_location: dict = {}
    for row in rows:
        entry = by_location.setdefault(row["location"], {"count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += row["object_size"]
    return {"cluster": {"summary": by_location, "total_objects": len(rows)}}


__all__ = [
    "ClusterEvents",
    "StateRow",
    "list_actors",
    "list_jobs",
    "list_nodes",
    "list_objects",
    "list_placement_groups",
    "list_tasks",
    "list_workers",
    "summarize_actors",
    "summarize_objects",
    "summarize_tasks",
]


class ClusterEvents:
    """The cluster's event stream: a snapshot about twice a second, newest first.

    Each snapshot is a dict with resources_total/resources_available, object store use,
    tasks_by_state (live tasks, plus FINISHED/FAILED/CANCELLED since the node started;
    FAILED leaves out cancelled tasks), actors_by_state
    and num_workers. Widgets and the JupyterLab panel read it; close() when done.

    Example:
        with ClusterEvents() as events:
            snapshot = events.next(timeout_s=2)
    """

    def __init__(self):
        import zmq

        from .._core import lifecycle

        client = _client()
        self._context = zmq.Context.instance()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.CONFLATE, 1)  # only the newest snapshot matters
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.connect(f"ipc://{lifecycle.node_socket_path(client.node_info.session_dir, 'events')}")
        self._zmq = zmq

    def next(self, timeout_s: float | None = None) -> dict | None:
        """The next snapshot, or None if none arrives within `timeout_s`."""
        from .._core import protocol

        if self._socket is None:
            raise RuntimeError("ClusterEvents is closed")
        timeout_ms = -1 if timeout_s is None else int(timeout_s * 1000)
        if not self._socket.poll(timeout_ms):
            return None
        snapshot = protocol.decode(self._socket.recv())
        return {name: getattr(snapshot, name) for name in snapshot.FIELDS}

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def __enter__(self) -> ClusterEvents:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
