"""Rows of cluster state for the state API, built from a node manager's tables.

Read-only views: nothing here changes scheduling or object state. Rows are plain dicts with
Ray's field names, so `shoal.util.state` can filter them and tools can print them.
"""

from __future__ import annotations

import time

from . import protocol
from .scheduling import UNIT

_TASK_STATES = {
    "WAITING": "PENDING_ARGS_AVAIL",
    "QUEUED": "PENDING_NODE_ASSIGNMENT",
    "RUNNING": "RUNNING",
}


def live_state(state: str) -> str:
    return _TASK_STATES.get(state, state)


def task_summary(record, state: str, error_type: str | None, now: float) -> tuple:
    """What a finished task leaves in the history: a small tuple, cheap at full task rate."""
    spec = record.spec
    return (spec, record.worker_id, record.started_wall, now, state, error_type)


def task_row(spec, worker_id, started_wall, ended_wall, state, error_type, node_id: str, worker_pids: dict) -> dict:
    if spec.actor_creation is not None:
        kind = "ACTOR_CREATION_TASK"
    elif spec.actor_id is not None:
        kind = "ACTOR_TASK"
    else:
        kind = "NORMAL_TASK"
    return {
        "task_id": spec.task_id.hex(),
        "attempt_number": spec.attempt,
        "name": spec.name or spec.function_name,
        "func_or_class_name": spec.function_name,
        "state": _TASK_STATES.get(state, state),
        "type": kind,
        "actor_id": spec.actor_id.hex() if spec.actor_id else None,
        "parent_task_id": spec.parent_task_id.hex() if spec.parent_task_id else None,
        "job_id": spec.job_id.hex() if spec.job_id is not None else None,
        "node_id": node_id,
        "worker_id": worker_id.hex() if worker_id else None,
        "worker_pid": worker_pids.get(worker_id) if worker_id else None,
        "required_resources": dict(spec.resources),
        "start_time_ms": int(started_wall * 1000) if started_wall else None,
        "end_time_ms": int(ended_wall * 1000) if ended_wall else None,
        "error_type": error_type,
    }


def object_rows(service) -> list[dict]:
    rows = []
    for entry in service.objects.entries.values():
        value = entry.value
        if value is None:
            where, size = "PENDING", 0
        elif value.data is not None:
            where, size = "INLINE", len(value.data)
        elif entry.object_id in service.remote_objects:
            where, size = "REMOTE", value.shm_size
        elif entry.spill_path:
            where, size = "SPILLED", value.shm_size
        else:
            where, size = "SHARED_MEMORY", value.shm_size
        rows.append(
            {
                "object_id": entry.object_id.hex(),
                "object_size": size,
                "task_status": "FINISHED" if value is not None else "PENDING",
                "reference_type": "LOCAL_REFERENCE"
                if entry.ref_total
                else ("PINNED_IN_MEMORY" if entry.pin_total else "USED_BY_PENDING_TASK"),
                "location": where,
                "ref_count": entry.ref_total,
                "pinned": entry.pin_total,
                "node_id": service.node_id.hex(),
                "is_error": bool(value.is_error) if value is not None else False,
            }
        )
    return rows


def worker_rows(service) -> list[dict]:
    rows = []
    for worker_id, pid in service.worker_pids.items():
        slot = service.scheduler.workers.get(worker_id)
        actor_id = service.actors.by_worker.get(worker_id)
        if slot is None:
            state = "STARTING"
        elif actor_id is not None:
            state = "ACTOR"
        elif slot.assigned:
            state = "BLOCKED" if slot.blocked else "BUSY"
        else:
            state = "IDLE"
        rows.append(
            {
                "worker_id": worker_id.hex(),
                "pid": pid,
                "node_id": service.node_id.hex(),
                "worker_type": "WORKER",
                "state": state,
                "is_alive": True,
                "actor_id": actor_id.hex() if actor_id else None,
                "assigned_tasks": len(slot.assigned) if slot else 0,
            }
        )
    return rows


FAULT_COUNTERS = ("messages_dropped", "handler_errors", "connections_refused")


def node_rows(service) -> list[dict]:
    service.cluster.upsert(service._self_info())
    rows = []
    for info in service.cluster.nodes.values():
        if info.node_id == service.node_id:
            faults = service.faults.totals()
        else:  # as of its last heartbeat
            faults = (info.extra.get("counts") or {}).get("faults") or {}
        rows.append(
            {
                "node_id": info.node_id.hex(),
                "node_ip": info.node_ip,
                "is_head_node": info.is_head,
                "state": "ALIVE" if info.alive else "DEAD",
                "resources_total": {name: amount / 1000 for name, amount in info.total.items()},
                "resources_available": {name: max(0, amount) / 1000 for name, amount in info.available.items()},
                "object_store_used_bytes": info.object_store_used_bytes,
                "object_store_total_bytes": info.object_store_bytes,
                "spilled_bytes": service.store.spilled_bytes if info.node_id == service.node_id else None,
                "num_workers": info.num_workers,
                # Malformed or unexpected messages it dropped, handler errors it survived, and
                # TCP connections it refused (too many unauthenticated ones at once).
                **{name: int(faults.get(name, 0)) for name in FAULT_COUNTERS},
            }
        )
    return rows


def job_rows(service) -> list[dict]:
    return [dict(job, submission_id=None, driver_id=client) for client, job in service.control.jobs.items()]


def actor_rows(service) -> list[dict]:
    rows = []
    for row in service.actors.listing(None):
        row = dict(row)
        row.setdefault("node_id", service.node_id.hex())
        rows.append(row)
    return rows


def task_rows(service) -> list[dict]:
    node_id = service.node_id.hex()
    pids = dict(service.worker_pids)
    pids.update(service.exited_worker_pids)
    rows = [task_row(*summary, node_id=node_id, worker_pids=pids) for summary in service.finished_tasks]
    for record in service.tasks.values():
        where = record.node.hex() if record.node is not None else node_id
        rows.append(task_row(record.spec, record.worker_id, record.started_wall, None, record.state, None, where, pids))
    return rows


_MERGE_KEYS = {
    "tasks": lambda row: (row["task_id"], row["attempt_number"]),
    "actors": lambda row: row["actor_id"],
    "objects": lambda row: row["object_id"],
}


def _detail(row: dict) -> int:
    """How much a row knows: the node running a task or actor has its worker and pid."""
    return sum(1 for key in ("worker_id", "pid", "worker_pid") if row.get(key)) + (
        row.get("location") not in (None, "PENDING")
    )


def merge_rows(kind: str, rows: list[dict]) -> list[dict]:
    """One row per task, actor or object when several nodes report it (owner and host)."""
    key_of = _MERGE_KEYS.get(kind)
    if key_of is None:
        return rows
    merged: dict = {}
    for row in rows:
        key = key_of(row)
        known = merged.get(key)
        if known is None or _detail(row) > _detail(known):
            merged[key] = row
    return list(merged.values())


BUILDERS = {
    "nodes": node_rows,
    "workers": worker_rows,
    "tasks": task_rows,
    "actors": actor_rows,
    "objects": object_rows,
    "jobs": job_rows,
    "placement_groups": lambda service: service.placement_groups.rows(),
}


# -- reports: the event stream, cluster info, the USR2 dump ---------------------------------


def local_counts(service) -> dict:
    """Tasks and actors of this node by state (work sent to other nodes counts where it runs)."""
    tasks_by_state: dict = {
        "FINISHED": service.finished_count,
        "FAILED": service.failed_count,
        "CANCELLED": service.cancelled_count,
    }
    for record in service.tasks.values():
        if record.node is None:
            state = live_state(record.state)
            tasks_by_state[state] = tasks_by_state.get(state, 0) + 1
    actors_by_state: dict = {}
    for actor in service.actors.actors.values():
        if actor.node is None:
            actors_by_state[actor.state] = actors_by_state.get(actor.state, 0) + 1
    return {"tasks": tasks_by_state, "actors": actors_by_state, "faults": service.faults.totals()}


def snapshot(service) -> protocol.ClusterSnapshot:
    """One event-stream tick. The head of a cluster speaks for all of it: every node's usage
    and the task and actor counts the other nodes sent with their heartbeats."""
    counts = local_counts(service)
    nodes = None
    if service.is_head and len(service.cluster.nodes) > 1:
        nodes = node_rows(service)
        for info in service.cluster.peers():
            for kind, by_state in (info.extra.get("counts") or {}).items():
                for state, count in by_state.items():
                    into = counts.setdefault(kind, {})
                    into[state] = into.get(state, 0) + count
    scheduler, store = service.scheduler, service.store
    return protocol.ClusterSnapshot(
        service.snapshot_sequence,
        time.time(),
        service.node_id.hex(),
        scheduler.total_dict(),
        scheduler.available_dict(),
        store.used_bytes,
        store.capacity_bytes,
        counts["tasks"],
        counts["actors"],
        len(service.worker_pids),
        nodes,
    )


def cluster_info(service, request_id: int) -> protocol.ClusterInfoReply:
    """`shoal.nodes()`, `cluster_resources()` and `available_resources()` over live nodes."""
    service.cluster.upsert(service._self_info())
    nodes, total, available = [], {}, {}
    for info in service.cluster.nodes.values():
        node_total = {name: amount / UNIT for name, amount in info.total.items()}
        node_total["object_store_memory"] = float(info.object_store_bytes)
        nodes.append(info.ray_row(node_total))
        if not info.alive:
            continue
        node_available = {name: max(0, amount) / UNIT for name, amount in info.available.items()}
        node_available["object_store_memory"] = float(info.object_store_bytes - info.object_store_used_bytes)
        for sums, values in ((total, node_total), (available, node_available)):
            for name, amount in values.items():
                sums[name] = sums.get(name, 0.0) + amount
    workers = [{"worker_id": wid.hex(), "pid": pid, "alive": True} for wid, pid in service.worker_pids.items()]
    return protocol.ClusterInfoReply(request_id, nodes, total, available, workers)


def dump(service, log) -> None:
    """The task table, workers, objects and queues, to the log (kill -USR2 <node manager>)."""
    objects, scheduler = service.objects, service.scheduler
    log.info(
        "state dump: %d tasks, %d queued, %d objects",
        len(service.tasks),
        scheduler.queued_count(),
        len(objects.entries),
    )
    for record in service.tasks.values():
        log.info(
            "  task %s %s %s worker=%s node=%s missing=%s args=%s",
            record.spec.task_id.hex(),
            record.spec.function_name,
            record.state,
            record.worker_id.hex() if record.worker_id else None,
            record.node.hex() if record.node else None,
            objects.task_missing.get(record.spec.task_id),
            [(a.hex(), bool(objects.get(a) and objects.get(a).ready)) for a in record.spec.arg_refs],
        )
    for slot in scheduler.workers.values():
        log.info(
            "  worker %s grant=%s assigned=%d blocked=%s",
            slot.worker_id.hex(),
            slot.grant,
            len(slot.assigned),
            slot.blocked,
        )
    for entry in objects.entries.values():
        log.info(
            "  object %s ready=%s arena=%s remote=%s refs=%s holds=%s pins=%s",
            entry.object_id.hex(),
            entry.ready,
            entry.in_arena,
            service.remote_objects.get(entry.object_id, b"").hex(),
            entry.refs,
            entry.holds,
            entry.pins,
        )
    log.info("  available=%s queues=%s", scheduler.available, {k: len(v) for k, v in scheduler.queues.items()})
