"""Typed messages between shoal processes, and the one codec that encodes them.

Every record is a frozen, slotted dataclass registered under a small integer kind. The codec
packs a record as a msgpack ext value (kind, packed fields), so records nest (a SubmitTasks
carries TaskSpecs). User payloads (pickled functions, arguments and values) are opaque `bytes`
fields: control processes forward them and never unpickle them.

Requests are verb-noun (SubmitTasks), replies `<Request>Reply`, events past tense.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import msgpack

_REGISTRY: dict[int, type] = {}


def record(kind: int):
    """Register a dataclass as a wire record with a unique kind number (1..127)."""

    def wrap(cls):
        cls = dataclass(frozen=True, slots=True)(cls)
        if kind in _REGISTRY:
            raise RuntimeError(f"message kind {kind} registered twice")
        cls.KIND = kind
        cls.FIELDS = tuple(f.name for f in fields(cls))
        _REGISTRY[kind] = cls
        return cls

    return wrap


def _default(value: Any) -> Any:
    kind = getattr(value, "KIND", None)
    if kind is None:
        raise TypeError(f"cannot encode {type(value).__name__} in a shoal message")
    # Records become ext values so that nested records decode back to their class.
    packed = msgpack.packb([getattr(value, name) for name in value.FIELDS], default=_default, use_bin_type=True)
    return msgpack.ExtType(kind, packed)


_MAX_NESTING = 8  # real messages nest 3 deep (ExecuteTasks > TaskExec > TaskSpec)
_depth = threading.local()


def _ext_hook(kind: int, data: bytes) -> Any:
    cls = _REGISTRY.get(kind)
    if cls is None:
        raise ValueError(f"unknown message kind {kind}")
    depth = getattr(_depth, "value", 0)
    if depth >= _MAX_NESTING:
        raise ValueError("message records nested too deeply")
    _depth.value = depth + 1
    try:
        values = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    finally:
        _depth.value = depth
    if not isinstance(values, list) or len(values) != len(cls.FIELDS):
        raise ValueError(f"{cls.__name__} expects {len(cls.FIELDS)} fields")
    return cls(*values)


def encode(message: Any) -> bytes:
    """Encode one record to bytes."""
    return msgpack.packb(message, default=_default, use_bin_type=True)


def decode(data: bytes) -> Any:
    """Decode bytes made by `encode`; raises ValueError for anything malformed."""
    try:
        message = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except ValueError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise ValueError(f"malformed shoal message: {exc}") from None
    if not hasattr(message, "KIND"):
        raise ValueError(f"malformed shoal message: top level is {type(message).__name__}")
    return message


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
    contained: list = None  # ids of ObjectRefs serialized inside this value


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


@record(3)
class TaskExec:
    """A task handed to a worker, with its ref arguments resolved to values."""

    spec: TaskSpec
    arg_values: list  # ObjectValue per spec.arg_refs
    gpu_ids: list  # GPU instances granted to the worker running this task


@record(4)
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


@record(11)
class SubmitTasks:
    specs: list


@record(12)
class ExportFunction:
    function_id: bytes
    payload: bytes


@record(13)
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


@record(17)
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


@record(20)
class PublishLogs:
    records: list  # LogRecord


@record(21)
class ClusterInfoRequest:
    request_id: int


@record(22)
class Disconnect:
    reason: str = ""


@record(24)
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


@record(25)
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


@record(41)
class ObjectsReady:
    values: list  # ObjectValue


@record(42)
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
