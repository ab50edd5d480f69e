"""Typed messages between shoal processes, and the one codec that encodes them.

Every record is a frozen, slotted dataclass registered under a small integer kind. The codec
packs a record as a msgpack array [kind, field, ...] in one pass; records nest (a SubmitTasks
carries TaskSpecs) where the record's schema says so. User payloads (pickled functions, arguments
and values) are opaque `bytes` fields: control processes forward them and never unpickle them.

Requests are verb-noun (SubmitTasks), replies `<Request>Reply`, events past tense.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TypeVar, cast

import msgpack

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # the marker only informs type checkers; on 3.10 nothing reads it

    def dataclass_transform(**_kwargs):
        return lambda decorator: decorator


_REGISTRY: dict[int, type] = {}
_Record = TypeVar("_Record", bound=type)


@dataclass_transform(frozen_default=True)
def record(kind: int, nested: dict | None = None) -> Callable[[_Record], _Record]:
    """Register a dataclass as a wire record with a unique kind number.

    `nested` names the fields that hold other records: `{"spec": TaskSpec}` for one record,
    `{"values": [ObjectValue]}` for a list of them. The schema is fixed, so decoding checks
    every nested record's kind and nesting depth is bounded by the schema itself.
    """

    def wrap(cls: Any) -> Any:
        cls = dataclass(frozen=True, slots=True)(cls)
        if kind in _REGISTRY:
            raise RuntimeError(f"message kind {kind} registered twice")
        cls.KIND = kind
        names = cls.FIELDS = tuple(f.name for f in fields(cls))
        # attrgetter of one name returns the bare value, not a 1-tuple.
        cls.GETTER = (lambda m, n=names[0]: (getattr(m, n),)) if len(names) == 1 else operator.attrgetter(*names)
        schema = []
        for name, target in (nested or {}).items():
            many = isinstance(target, list)
            schema.append((cls.FIELDS.index(name), target[0] if many else target, many))
        cls.NESTED = tuple(schema)
        _REGISTRY[kind] = cls
        return cls

    return wrap


def _to_wire(message) -> list:
    cls = type(message)
    values = [cls.KIND, *cls.GETTER(message)]
    for index, _, many in cls.NESTED:
        value = values[index + 1]
        if value is not None:
            values[index + 1] = [_to_wire(item) for item in value] if many else _to_wire(value)
    return values


def _from_wire(values, expected: type | None = None):
    if type(values) is not list or not values:
        raise ValueError("malformed shoal message: a record must be a non-empty array")
    cls = _REGISTRY.get(values[0]) if type(values[0]) is int else None
    if cls is None:
        raise ValueError(f"unknown message kind {values[0]!r}")
    if expected is not None and cls is not expected:
        raise ValueError(f"{expected.__name__} expected, got {cls.__name__}")
    if len(values) != len(cls.FIELDS) + 1:
        raise ValueError(f"{cls.__name__} expects {len(cls.FIELDS)} fields, got {len(values) - 1}")
    args = values[1:]
    for index, target, many in cls.NESTED:
        value = args[index]
        if value is None:
            continue
        if many:
            if type(value) is not list:
                raise ValueError(f"{cls.__name__}.{cls.FIELDS[index]} must be a list of records")
            args[index] = [_from_wire(item, target) for item in value]
        else:
            args[index] = _from_wire(value, target)
    return cls(*args)


def encode(message: Any) -> bytes:
    """Encode one record to bytes."""
    if not hasattr(type(message), "KIND"):
        raise TypeError(f"cannot encode {type(message).__name__} as a shoal message")
    # packb without a stream always returns the bytes (None is only for an unreset Packer).
    return cast(bytes, msgpack.packb(_to_wire(message), use_bin_type=True))


def decode(data: bytes) -> Any:
    """Decode bytes made by `encode`; raises ValueError for anything malformed."""
    try:
        values = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise ValueError(f"malformed shoal message: {exc}") from None
    try:
        return _from_wire(values)
    except ValueError:
        raise
    except Exception as exc:  # wrong field types reaching a dataclass constructor
        raise ValueError(f"malformed shoal message: {exc}") from None


def registered_kinds() -> dict[int, type]:
    return dict(_REGISTRY)


# ---------------------------------------------------------------------------------------------
# Records carried inside messages


@record(1)
class ObjectValue:
    """A ready object: inline `data`, or a location in the node's shared arena.

    `data` is the serialized object (see serialization.py) when the value is small; otherwise
    it is None and `shm_offset`/`shm_size` locate it. Delivering a shared-arena location pins
    the object for the receiver until it sends `ReleasePins`.
    """

    object_id: bytes
    data: bytes | None
    shm_offset: int = -1
    shm_size: int = 0
    is_error: bool = False
    contained: list | None = None  # ids of ObjectRefs serialized inside this value


@record(2)
class TaskSpec:
    task_id: bytes
    owner_id: bytes  # client that submitted the task and owns its returns
    parent_task_id: bytes | None
    function_id: bytes
    function_name: str
    args: bytes | None  # serialized (args, kwargs) with top-level refs as placeholders
    arg_refs: list  # top-level ObjectRef ids, in placeholder order; see args_in_store
    args_in_store: bool  # large args were put: the last arg_ref holds (args, kwargs)
    num_returns: int
    resources: dict
    max_retries: int
    retry_exceptions: bool
    retry_exception_types: bytes | None  # pickled tuple of exception classes, if limited
    name: str | None
    env_vars: dict | None
    strategy: list | None  # ["SPREAD"], ["NODE_AFFINITY", node_id_hex, soft], None = default
    contained: list  # refs nested inside the args (pinned while the task lives)
    attempt: int = 0
    actor_id: bytes | None = None  # method calls and actor creation: the actor
    actor_creation: dict | None = None  # creation only: how the worker hosts the actor
    namespace: str | None = None  # the submitting job's namespace, for named actors
    job_id: bytes | None = None  # the driver's job; tasks submitted from tasks and actors inherit it


@record(3, nested={"spec": TaskSpec, "arg_values": [ObjectValue]})
class TaskExec:
    """A task handed to a worker, with its ref arguments resolved to values."""

    spec: TaskSpec
    arg_values: list  # ObjectValue per spec.arg_refs
    gpu_ids: list  # GPU instances granted to the worker running this task


@record(4, nested={"returns": [ObjectValue]})
class TaskResult:
    task_id: bytes
    returns: list  # ObjectValue per return
    retriable_error: bool = False  # failed with an exception retry_exceptions allows
    duration_s: float = 0.0


@record(5)
class LogRecord:
    task_id: bytes | None
    owner_id: bytes | None
    task_name: str
    pid: int
    stream: str  # "stdout" or "stderr"
    text: str


# ---------------------------------------------------------------------------------------------
# Client -> node manager


@record(10)
class RegisterClient:
    client_id: bytes
    pid: int
    kind: str  # "driver" or "worker"
    namespace: str | None = None


@record(11, nested={"specs": [TaskSpec]})
class SubmitTasks:
    specs: list


@record(12)
class ExportFunction:
    function_id: bytes
    payload: bytes


@record(13, nested={"values": [ObjectValue]})
class PutObjects:
    values: list  # ObjectValue; the putter holds one reference to each


@record(14)
class AllocateObject:
    request_id: int
    size_bytes: int


@record(15)
class GetObjects:
    object_ids: list  # reply: ObjectsReady as each becomes ready


@record(16)
class UpdateReferences:
    """Reference count changes since the last update; increments are applied first."""

    deltas: dict  # object id -> +n / -n
    released_pins: list  # one entry per delivered arena location no longer in use
    aborted_offsets: list  # allocations that were never sealed


@record(17, nested={"results": [TaskResult]})
class TasksDone:
    results: list  # TaskResult


@record(18)
class WorkerBlocked:
    blocked: bool  # True: waiting in get, lend the CPU; False: running again
    returned_task_ids: list  # queued tasks handed back (not started) when blocking


@record(19)
class CancelTask:
    task_id: bytes
    force: bool
    recursive: bool


@record(20, nested={"records": [LogRecord]})
class PublishLogs:
    records: list  # LogRecord


@record(21)
class ClusterInfoRequest:
    request_id: int


@record(22)
class Disconnect:
    reason: str = ""


@record(24, nested={"creation": TaskSpec})
class ActorSpec:
    """Everything needed to (re)create an actor; kept by the node manager for restarts."""

    actor_id: bytes
    owner_id: bytes
    creation: TaskSpec  # the constructor call (function_id is the class definition)
    placement: dict  # resources needed to place it
    lifetime: dict  # resources held while it runs
    name: str | None
    namespace: str
    detached: bool
    max_restarts: int
    max_task_retries: int
    class_name: str
    handle_meta: bytes  # pickled method table, so get_actor can build a handle


@record(25, nested={"spec": ActorSpec})
class CreateActor:
    request_id: int  # 0: no reply wanted
    spec: ActorSpec
    get_if_exists: bool


@record(26)
class GetActor:
    request_id: int
    name: str
    namespace: str


@record(27)
class KillActor:
    actor_id: bytes
    no_restart: bool


@record(28)
class ActorExited:
    """Worker -> node manager: the actor called exit_actor()."""

    actor_id: bytes
    reason: str


@record(29)
class ListActors:
    request_id: int
    namespace: str | None


# ---------------------------------------------------------------------------------------------
# Node manager -> client


@record(40)
class RegisterClientReply:
    node_id: bytes
    session_dir: str
    arena: list  # [creator_pid, fd, capacity_bytes]
    resources: dict
    node_ip: str
    node_manager_pid: int = 0  # a client on the same machine watches it to notice its death
    max_message_bytes: int = 0  # the largest message the node takes over TCP (SHOAL_MAX_MESSAGE_BYTES); 0: unknown


@record(41, nested={"values": [ObjectValue]})
class ObjectsReady:
    values: list  # ObjectValue


@record(42, nested={"tasks": [TaskExec]})
class ExecuteTasks:
    tasks: list  # TaskExec
    functions: dict  # function id -> payload, for functions this worker has not seen


@record(43)
class AllocateObjectReply:
    request_id: int
    offset: int  # -1 when the arena is full
    error: str | None = None


@record(44)
class CancelRunning:
    task_id: bytes
    force: bool = False  # a task queued on the worker: skip it; if it has begun, say so (CancelledTaskStarted)


@record(45)
class ClusterInfoReply:
    request_id: int
    nodes: list  # dicts in Ray's ray.nodes() shape
    total: dict
    available: dict
    workers: list


@record(46)
class ShuttingDown:
    reason: str = ""


@record(30)
class StateQuery:
    """Ask for a table of cluster state: nodes, workers, tasks, actors, objects, jobs."""

    request_id: int
    kind: str


@record(31)
class CreatePlacementGroup:
    placement_group_id: bytes
    name: str
    bundles: list  # resource dicts
    strategy: str  # PACK, SPREAD, STRICT_PACK, STRICT_SPREAD
    lifetime: str | None


@record(32)
class RemovePlacementGroup:
    placement_group_id: bytes


@record(51)
class ClusterSnapshot:
    """Published by the node manager about twice a second on its event socket (PUB)."""

    sequence: int
    time: float
    node_id: str
    resources_total: dict
    resources_available: dict
    object_store_used_bytes: int
    object_store_total_bytes: int
    tasks_by_state: dict  # live tasks by state, plus FINISHED/FAILED/CANCELLED counts since start
    actors_by_state: dict
    num_workers: int
    nodes: list | None = None  # from the head of a cluster: every node's usage (state API rows)


@record(50)
class StateReply:
    request_id: int
    rows: list  # dicts


@record(49)
class RevokePins:
    """Node manager -> client: hand back these pins when no array uses them (to spill)."""

    object_ids: list


@record(47)
class ActorReply:
    """Answer to CreateActor (named) and GetActor."""

    request_id: int
    actor_id: bytes | None
    handle_meta: bytes | None
    error: str | None  # "exists", "missing" or a message


@record(48)
class ListActorsReply:
    request_id: int
    actors: list  # dicts: actor_id, class_name, name, namespace, state, pid


# ---------------------------------------------------------------------------------------------
# Node manager <-> node manager (over the cluster's CURVE-authenticated TCP ports)


@record(70)
class RegisterNode:
    """A node joining the cluster, sent to the head."""

    node_id: bytes
    endpoint: str  # tcp://host:port where its node manager listens
    node_ip: str
    resources: dict  # totals
    object_store_bytes: int
    data_endpoint: str = ""  # tcp://host:port where it serves object chunks


@record(71)
class NodeHeartbeat:
    node_id: bytes
    total: dict  # placement group bundles add resources
    available: dict
    object_store_used_bytes: int
    num_workers: int
    counts: dict | None = None  # {"tasks": {state: n}, "actors": {state: n}} for the event stream


@record(72)
class NodeTable:
    """Head -> every node, each heartbeat interval: the nodes and their free resources."""

    nodes: list  # dicts: node_id, endpoint, node_ip, total, available, alive, is_head, ...


@record(73, nested={"specs": [TaskSpec]})
class ForwardTasks:
    """Owner node -> the node chosen to run these tasks (spillback)."""

    specs: list
    functions: dict  # function id -> payload, for functions the receiver has not been sent


@record(74, nested={"results": [TaskResult]})
class ForwardedDone:
    """Executing node -> owner node: final results. Arena values stay on the executing node."""

    results: list


@record(75)
class WatchObjects:
    """Borrower node -> owner node: tell me where these objects are once they are ready."""

    object_ids: list


@record(76, nested={"values": [ObjectValue]})
class ObjectLocations:
    """Owner node -> borrower: inline values, or (data None) the node holding each one."""

    values: list
    locations: list  # node id per value; b"" for an inline value


@record(77)
class PullChunk:
    """Sent on a node's data port; `mac` proves the sender holds the cluster token."""

    object_id: bytes
    offset: int
    length: int
    mac: bytes = b""


@record(78)
class ObjectChunk:
    """A piece of an object's bytes; the bytes follow in the next frame."""

    object_id: bytes
    offset: int
    total: int
    error: str | None = None  # the holder has no copy


@record(79)
class UpdateBorrows:
    """Borrower node -> owner node: +1 / -1 per object this node started / stopped using."""

    deltas: dict


@record(80)
class ReleaseObjects:
    """Owner node -> holder: drop the copies you kept for me."""

    object_ids: list


@record(81, nested={"spec": ActorSpec})
class ForwardActor:
    """Owner node -> the node chosen to host an actor: create (or re-create) it there."""

    spec: ActorSpec
    restarts_left: int
    num_restarts: int


@record(82)
class LocateActors:
    """Caller node -> the actor's owner node: where does it run? (answered when placed)"""

    actor_ids: list


@record(83, nested={"death": ObjectValue})
class ActorLocation:
    """Owner node -> caller node (and host -> owner: state changes of a hosted actor)."""

    actor_id: bytes
    node_id: bytes  # b"" once the actor is dead
    state: str
    num_restarts: int
    death: ObjectValue | None = None


@record(84)
class ReserveBundles:
    """Owner of a placement group -> a node: reserve these bundles (all or none)."""

    placement_group_id: bytes
    indexes: list
    bundles: list  # resource dicts, one per index


@record(85)
class BundlesReserved:
    placement_group_id: bytes
    ok: bool


@record(86)
class ReleaseBundles:
    placement_group_id: bytes


@record(87)
class RegisterActorName:
    """A node -> the head: a named actor it owns appeared (actor_id) or died (None)."""

    namespace: str
    name: str
    actor_id: bytes | None
    handle_meta: bytes | None


@record(88)
class Keepalive:
    """Either way over TCP, about once a second: the other side is still there."""

    sequence: int = 0


@record(89)
class RevokePinsReply:
    """Client -> node manager: of the pins RevokePins asked back, these stay (arrays use them).

    Each still goes back by UpdateReferences once its last array is gone; until then the node
    manager does not wait for it (a get it parked is answered with a copy instead).
    """

    kept: list


@record(90)
class FramePieces:
    """Heads a multipart message to a CURVE port in which frames were cut to size (tcp_frames.py)."""

    counts: list  # how many pieces each following frame was cut into


@record(91)
class CancelledTaskStarted:
    """A worker -> its node: a task force-cancelled as queued there had begun; end it by killing the worker.

    Sent after the results of the tasks before it, so the node sees it as the task the worker runs.
    """

    task_id: bytes
