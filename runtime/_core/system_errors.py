"""Error values made by the runtime itself (worker crashed, task cancelled, ...).

These are the only values a control process pickles: shoal's own exception objects, stored
as error objects under a task's return ids so `get` raises them.
"""

from __future__ import annotations

from .protocol import ObjectValue, TaskSpec
from .serialization import serialize


def make_error(kind: str, spec: TaskSpec | None, details: dict | None) -> BaseException:
    from .. import exceptions

    name = spec.name or spec.function_name if spec is not None else "?"
    info = details or {}  # every kind but "cancelled" comes with its details
    if kind == "cancelled":
        return exceptions.TaskCancelledError(spec.task_id.hex() if spec is not None else None)
    if kind == "worker_crashed":
        if info.get("cause"):
            # No exit status was seen: say how the worker was lost instead of guessing why.
            return exceptions.WorkerCrashedError(
                f"The worker process (pid {info.get('pid')}) running task {name!r} was lost: {info['cause']}."
            )
        message = exceptions.format_worker_death(
            info.get("pid"), exitcode=info.get("exitcode"), signal_number=None, last_task=name
        )
        return exceptions.WorkerCrashedError(message)
    if kind == "actor_died":
        return exceptions.ActorDiedError(info.get("message"), actor_id=info.get("actor_id"))
    if kind == "actor_unavailable":
        return exceptions.ActorUnavailableError(info["message"], actor_id=info.get("actor_id"))
    if kind == "unschedulable":
        if spec is not None and spec.actor_creation is not None:
            return exceptions.ActorUnschedulableError(info["message"])
        return exceptions.TaskUnschedulableError(info["message"])
    if kind == "placement_group_removed":
        return exceptions.PlacementGroupSchedulingError(
            f"placement group {info.get('name') or ''!s} was removed before it could be created"
        )
    if kind == "node_died":
        return exceptions.NodeDiedError(info.get("message"))
    if kind == "object_lost":
        cls = {
            "owner_died": exceptions.OwnerDiedError,
            "put": exceptions.ObjectReconstructionFailedError,
            "lineage": exceptions.ObjectReconstructionFailedLineageEvictedError,
        }.get(info.get("reason", ""), exceptions.ObjectLostError)
        return cls(info.get("object_id", "?"), info.get("owner"))
    if kind == "store_full":
        return exceptions.ObjectStoreFullError(info.get("message", "object store full"))
    return exceptions.RaySystemError(f"{kind}: {details}")


def error_value(kind: str, spec: TaskSpec | None, details: dict | None) -> ObjectValue:
    error = make_error(kind, spec, details)
    serialized = serialize(error)
    return ObjectValue(b"", serialized.to_bytes(), -1, 0, True, [])
