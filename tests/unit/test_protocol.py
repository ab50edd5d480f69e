"""Unit tests for the wire codec: every registered record round-trips; garbage is a ValueError."""

from __future__ import annotations

import random
from dataclasses import fields

import msgpack
import pytest
from shoal._core import protocol
from shoal._core.protocol import (
    ActorExited,
    ActorReply,
    ActorSpec,
    AllocateObject,
    AllocateObjectReply,
    CancelRunning,
    CancelTask,
    ClusterInfoReply,
    ClusterInfoRequest,
    ClusterSnapshot,
    CreateActor,
    CreatePlacementGroup,
    Disconnect,
    ExecuteTasks,
    ExportFunction,
    GetActor,
    GetObjects,
    KillActor,
    ListActors,
    ListActorsReply,
    LogRecord,
    ObjectsReady,
    ObjectValue,
    PublishLogs,
    PutObjects,
    RegisterClient,
    RegisterClientReply,
    RemovePlacementGroup,
    RevokePins,
    RevokePinsReply,
    ShuttingDown,
    StateQuery,
    StateReply,
    SubmitTasks,
    TaskExec,
    TaskResult,
    TasksDone,
    TaskSpec,
    UpdateReferences,
    WorkerBlocked,
)

TASK_ID = bytes(range(16))
OWNER_ID = b"\xff" * 12 + b"\x00" * 4
OBJECT_ID = b"\x00\x01\x80\xfe" * 5


def _task_spec(**overrides) -> TaskSpec:
    values = dict(
        task_id=TASK_ID,
        owner_id=OWNER_ID,
        parent_task_id=None,
        function_id=b"\x12" * 16,
        function_name="module.f",
        args=b"\x80\x05pickled\x00args",
        arg_refs=[OBJECT_ID, b"\x02" * 20],
        args_in_store=False,
        num_returns=2,
        resources={"CPU": 0.5, "GPU": 1.0, "custom": 3},
        max_retries=-1,
        retry_exceptions=True,
        retry_exception_types=None,
        name=None,
        env_vars={"A": "1", "UNICODE": "\u00e9\u4e2d"},
        strategy=["NODE_AFFINITY", "ab" * 14, True],
        contained=[b"\x03" * 20],
        attempt=3,
    )
    values.update(overrides)
    return TaskSpec(**values)


_INLINE = ObjectValue(OBJECT_ID, b"\x00inline\xff", contained=[b"\x04" * 20])
_IN_ARENA = ObjectValue(b"\x05" * 20, None, shm_offset=4096, shm_size=1 << 20, is_error=False)
_ERROR = ObjectValue(b"\x06" * 20, b"err", is_error=True)

_ACTOR_SPEC = ActorSpec(
    b"\x0b" * 16,
    OWNER_ID,
    _task_spec(
        actor_id=b"\x0b" * 16,
        actor_creation={"class_name": "C", "max_concurrency": 4, "resources": {"CPU": 2.0}},
        namespace="ns",
        job_id=b"\x0c\x00\xff\x01",
    ),
    {"CPU": 1.0},
    {},
    "counter",
    "ns",
    True,
    -1,
    2,
    "C",
    b"\x80\x05meta",
)

SAMPLES = [
    _INLINE,
    _IN_ARENA,
    _ERROR,
    _task_spec(),
    _task_spec(
        parent_task_id=b"\x09" * 16,
        args=None,
        args_in_store=True,
        name="n",
        env_vars=None,
        strategy=None,
        retry_exception_types=b"\x80\x05types",
        retry_exceptions=False,
        job_id=b"\x00\x00\x00\x01",
    ),
    TaskExec(_task_spec(), [_INLINE, _IN_ARENA], [0, 3]),
    TaskResult(TASK_ID, [_INLINE, _ERROR], retriable_error=True, duration_s=0.125),
    LogRecord(TASK_ID, OWNER_ID, "f", 1234, "stderr", "line 1\nline 2 \u2603\n"),
    LogRecord(None, None, "", 1, "stdout", ""),
    RegisterClient(OWNER_ID, 4321, "worker", namespace="ns"),
    RegisterClient(OWNER_ID, 4321, "driver"),
    SubmitTasks([_task_spec(), _task_spec(task_id=b"\x07" * 16)]),
    SubmitTasks([]),
    ExportFunction(b"\x12" * 16, b"\x80\x05" + bytes(range(256))),
    PutObjects([_INLINE, _IN_ARENA]),
    AllocateObject(7, 1 << 40),
    GetObjects([OBJECT_ID, b"\x05" * 20]),
    UpdateReferences({OBJECT_ID: 2, b"\x05" * 20: -1}, [OBJECT_ID, OBJECT_ID], [4096, 0]),
    TasksDone([TaskResult(TASK_ID, [_INLINE]), TaskResult(b"\x01" * 16, [])]),
    WorkerBlocked(True, [TASK_ID]),
    WorkerBlocked(False, []),
    CancelTask(TASK_ID, force=True, recursive=False),
    PublishLogs([LogRecord(TASK_ID, OWNER_ID, "f", 1, "stdout", "hi")]),
    ClusterInfoRequest(2**31),
    Disconnect("bye"),
    Disconnect(),
    RegisterClientReply(
        b"\x0a" * 28, "/tmp/shoal/session_x", [1000, 7, 1 << 30], {"CPU": 8.0, "GPU": 2.0}, "10.0.0.1", 4242, 1 << 32
    ),
    protocol.Keepalive(3),
    ObjectsReady([_INLINE, _IN_ARENA, _ERROR]),
    ExecuteTasks(
        [TaskExec(_task_spec(), [_INLINE], []), TaskExec(_task_spec(attempt=0), [], [1])],
        {b"\x12" * 16: b"payload", b"\x13" * 16: b""},
    ),
    AllocateObjectReply(7, -1, error="arena full"),
    AllocateObjectReply(8, 64),
    CancelRunning(TASK_ID),
    CancelRunning(TASK_ID, force=True),
    protocol.CancelledTaskStarted(TASK_ID),
    ClusterInfoReply(
        1,
        [{"NodeID": "ab", "Alive": True, "Resources": {"CPU": 2.0}}],
        {"CPU": 2.0},
        {"CPU": 1.5},
        [{"pid": 1, "worker_id": "cd", "idle": None}],
    ),
    ShuttingDown("node manager exiting"),
    _ACTOR_SPEC,
    CreateActor(3, _ACTOR_SPEC, True),
    CreateActor(0, _ACTOR_SPEC, False),
    GetActor(4, "counter", "ns"),
    KillActor(b"\x0b" * 16, True),
    ActorExited(b"\x0b" * 16, "exit_actor()"),
    ListActors(5, None),
    ActorReply(3, b"\x0b" * 16, b"meta", None),
    ActorReply(4, None, None, "missing"),
    ListActorsReply(5, [{"actor_id": "0b" * 16, "state": "ALIVE", "pid": 12}]),
    RevokePins([OBJECT_ID, b"\x05" * 20]),
    RevokePinsReply([OBJECT_ID]),
    StateQuery(6, "tasks"),
    CreatePlacementGroup(b"\x0c" * 16, "pair", [{"CPU": 1.0}, {"CPU": 1.0, "GPU": 0.5}], "STRICT_SPREAD", "detached"),
    CreatePlacementGroup(b"\x0c" * 16, "", [{"CPU": 1.0}], "PACK", None),
    RemovePlacementGroup(b"\x0c" * 16),
    ClusterSnapshot(
        7, 1.5e9, "ab" * 16, {"CPU": 2.0}, {"CPU": 1.0}, 10, 100, {"RUNNING": 1, "FINISHED": 9}, {"ALIVE": 2}, 3
    ),
    StateReply(6, [{"task_id": "ab", "state": "FINISHED", "worker_pid": None}]),
    protocol.RegisterNode(
        b"\x0d" * 16, "tcp://127.0.0.1:7000", "127.0.0.1", {"CPU": 4.0, "big_mem": 1.0}, 1 << 30, "tcp://127.0.0.1:7001"
    ),
    protocol.NodeHeartbeat(
        b"\x0d" * 16, {"CPU": 4000}, {"CPU": 3000}, 1024, 2, {"tasks": {"RUNNING": 1}, "actors": {}}
    ),
    protocol.NodeTable([{"node_id": b"\x0d" * 16, "endpoint": "tcp://127.0.0.1:7000", "alive": True}]),
    protocol.ForwardTasks([_task_spec()], {b"\x0e" * 16: b"payload"}),
    protocol.ForwardedDone([TaskResult(TASK_ID, [_INLINE, _IN_ARENA])]),
    protocol.WatchObjects([OBJECT_ID]),
    protocol.ObjectLocations([_INLINE, _IN_ARENA], [b"", b"\x0d" * 16]),
    protocol.PullChunk(OBJECT_ID, 8 << 20, 8 << 20, b"\x01" * 32),
    protocol.ObjectChunk(OBJECT_ID, 0, 300_000),
    protocol.ObjectChunk(OBJECT_ID, 0, 0, "no copy on this node"),
    protocol.UpdateBorrows({OBJECT_ID: 1, b"\x05" * 20: -1}),
    protocol.ReleaseObjects([OBJECT_ID]),
    protocol.ForwardActor(_ACTOR_SPEC, 2, 1),
    protocol.LocateActors([b"\x0b" * 16]),
    protocol.ActorLocation(b"\x0b" * 16, b"\x0d" * 16, "ALIVE", 0),
    protocol.ActorLocation(b"\x0b" * 16, b"", "DEAD", 1, _ERROR),
    protocol.ReserveBundles(b"\x0c" * 16, [0, 2], [{"CPU": 1.0}, {"GPU": 1.0}]),
    protocol.BundlesReserved(b"\x0c" * 16, True),
    protocol.ReleaseBundles(b"\x0c" * 16),
    protocol.RegisterActorName("ns", "counter", b"\x0b" * 16, b"meta"),
    protocol.RegisterActorName("ns", "counter", None, None),
    protocol.FramePieces([1, 3, 1]),
]


def test_samples_cover_every_registered_kind():
    covered = {type(sample) for sample in SAMPLES}
    missing = [cls.__name__ for cls in protocol.registered_kinds().values() if cls not in covered]
    assert not missing, f"add a sample for {missing}"


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message):
    data = protocol.encode(message)
    assert isinstance(data, bytes)
    decoded = protocol.decode(data)
    assert type(decoded) is type(message)
    assert decoded == message


def test_nested_records_decode_to_their_classes():
    message = protocol.decode(protocol.encode(SAMPLES[[type(s) for s in SAMPLES].index(ExecuteTasks)]))
    task = message.tasks[0]
    assert type(task) is TaskExec
    assert type(task.spec) is TaskSpec
    assert type(task.arg_values[0]) is ObjectValue
    assert isinstance(task.spec.task_id, bytes) and isinstance(task.spec.function_name, str)


def test_records_are_frozen_and_slotted():
    for cls in protocol.registered_kinds().values():
        assert hasattr(cls, "__slots__"), cls
    with pytest.raises(AttributeError):
        _INLINE.data = b"x"


def test_kind_numbers_unique_and_valid_ext_codes():
    kinds = protocol.registered_kinds()
    assert len(kinds) == len(set(kinds.values()))
    names = [cls.__name__ for cls in kinds.values()]
    assert len(names) == len(set(names))
    for kind, cls in kinds.items():
        assert cls.KIND == kind
        assert 1 <= kind <= 127
        assert cls.FIELDS == tuple(f.name for f in fields(cls))


def test_registering_a_used_kind_fails_and_leaves_registry_unchanged():
    before = protocol.registered_kinds()
    with pytest.raises(RuntimeError, match="registered twice"):

        @protocol.record(1)
        class Duplicate:
            x: int

    assert protocol.registered_kinds() == before


def test_registered_kinds_is_a_copy():
    kinds = protocol.registered_kinds()
    kinds.clear()
    assert protocol.registered_kinds()


def test_encode_rejects_non_record_objects():
    with pytest.raises(TypeError, match="object"):
        protocol.encode(Disconnect(object()))


# -- malformed input ------------------------------------------------------------------------


def _ext(kind: int, payload) -> bytes:
    return msgpack.packb(msgpack.ExtType(kind, msgpack.packb(payload, use_bin_type=True)), use_bin_type=True)


MALFORMED = {
    "empty": b"",
    "top_level_int": msgpack.packb(5),
    "top_level_str": msgpack.packb("SubmitTasks"),
    "top_level_list": msgpack.packb([1, 2, 3]),
    "top_level_none": msgpack.packb(None),
    "top_level_dict": msgpack.packb({"op": "submit"}),
    "list_of_records": msgpack.packb([msgpack.ExtType(22, msgpack.packb(["x"]))]),
    "unknown_kind": _ext(99, [1, 2]),
    "unknown_kind_zero": _ext(0, []),
    "unknown_nested_kind": _ext(11, [[msgpack.ExtType(120, b"\x90")]]),
    "too_few_fields": _ext(CancelTask.KIND, [b"id"]),
    "too_many_fields": _ext(Disconnect.KIND, ["a", "b", "c"]),
    "fields_not_a_list": _ext(Disconnect.KIND, 5),
    "fields_garbage": msgpack.packb(msgpack.ExtType(Disconnect.KIND, b"\xc1\xc1")),
    "fields_truncated": msgpack.packb(msgpack.ExtType(Disconnect.KIND, b"\x92\xa1")),
    "trailing_bytes": protocol.encode(Disconnect("x")) + b"\x00",
    "reserved_byte": b"\xc1",
    "timestamp_ext": msgpack.packb(msgpack.Timestamp(1, 0)),
}


@pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_raises_value_error(data):
    with pytest.raises(ValueError):
        protocol.decode(data)


def test_unknown_kind_error_names_the_kind():
    with pytest.raises(ValueError, match="99"):
        protocol.decode(msgpack.packb([99]))


def test_nested_record_of_the_wrong_kind_is_rejected():
    # SubmitTasks.specs holds TaskSpecs only: a Disconnect in its place is malformed.
    with pytest.raises(ValueError, match="TaskSpec"):
        protocol.decode(msgpack.packb([SubmitTasks.KIND, [[Disconnect.KIND, "x"]]]))


def test_real_nesting_depth_decodes():
    # The deepest real message: ExecuteTasks > TaskExec > TaskSpec / ObjectValue.
    message = ExecuteTasks([TaskExec(_task_spec(), [_INLINE], [0])], {})
    assert protocol.decode(protocol.encode(message)) == message


def test_absurd_nesting_is_a_value_error_not_a_crash():
    # Nesting is fixed by each record's schema, so deep input is just a malformed field.
    payload = "innermost"
    for _ in range(5000):
        payload = [payload]
    with pytest.raises(ValueError):
        protocol.decode(msgpack.packb([SubmitTasks.KIND, payload]))
    with pytest.raises(ValueError):
        protocol.decode(msgpack.packb(payload))


@pytest.mark.parametrize("message", SAMPLES[:12] + SAMPLES[-8:], ids=lambda m: type(m).__name__)
def test_every_truncation_is_a_value_error(message):
    data = protocol.encode(message)
    for cut in range(len(data)):
        with pytest.raises(ValueError):
            protocol.decode(data[:cut])


def _decode_or_value_error(data: bytes):
    try:
        message = protocol.decode(data)
    except ValueError:
        return None
    # Random bytes may by chance spell a valid record; anything returned must be one.
    assert type(message) in protocol.registered_kinds().values()
    return message


def test_fuzz_random_bytes_only_raise_value_error():
    rng = random.Random(20240611)
    for _ in range(400):
        _decode_or_value_error(rng.randbytes(rng.randrange(0, 64)))


def test_fuzz_random_bytes_behind_an_ext_header():
    # Aim the fuzz past msgpack's header checks: a valid ext header for a known kind.
    rng = random.Random(7)
    kinds = sorted(protocol.registered_kinds())
    for _ in range(300):
        body = rng.randbytes(rng.randrange(0, 40))
        _decode_or_value_error(msgpack.packb(msgpack.ExtType(rng.choice(kinds), body)))


def test_fuzz_mutated_valid_frames():
    rng = random.Random(11)
    frames = [protocol.encode(sample) for sample in SAMPLES]
    for _ in range(400):
        data = bytearray(rng.choice(frames))
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        _decode_or_value_error(bytes(data))
