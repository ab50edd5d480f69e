"""Typed identifiers for tasks, objects, workers, nodes and jobs.

Ids are `bytes` subclasses so they hash and compare at C speed and travel through msgpack
unchanged. An ObjectID is the TaskID that creates it plus a 4-byte return index, so the
owner of an object can be found from the task that made it.
"""

from __future__ import annotations

import itertools
import os
import struct
import threading

TASK_ID_BYTES = 16
OBJECT_ID_BYTES = TASK_ID_BYTES + 4


class BaseID(bytes):
    """Immutable binary id with Ray's `hex()` / `binary()` / `is_nil()` helpers."""

    __slots__ = ()
    SIZE = 16

    @classmethod
    def from_random(cls) -> BaseID:
        return cls(os.urandom(cls.SIZE))

    @classmethod
    def from_hex(cls, text: str) -> BaseID:
        return cls(bytes.fromhex(text))

    @classmethod
    def nil(cls) -> BaseID:
        return cls(b"\xff" * cls.SIZE)

    def binary(self) -> bytes:
        return bytes(self)

    def is_nil(self) -> bool:
        return self == b"\xff" * self.SIZE

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hex()})"

    __str__ = bytes.hex


class TaskID(BaseID):
    __slots__ = ()
    SIZE = TASK_ID_BYTES


class ObjectID(BaseID):
    __slots__ = ()
    SIZE = OBJECT_ID_BYTES

    def task_id(self) -> TaskID:
        return TaskID(self[:TASK_ID_BYTES])

    def index(self) -> int:
        return struct.unpack_from(">I", self, TASK_ID_BYTES)[0]


class ActorID(BaseID):
    __slots__ = ()
    SIZE = 16


class WorkerID(BaseID):
    __slots__ = ()
    SIZE = 16


class NodeID(BaseID):
    __slots__ = ()
    SIZE = 16


class JobID(BaseID):
    __slots__ = ()
    SIZE = 4


class PlacementGroupID(BaseID):
    __slots__ = ()
    SIZE = 16


def job_id_of(driver_client_id: bytes) -> bytes:
    """A driver's job id: the first bytes of its (random) client id, so every node names it alike."""
    return bytes(driver_client_id[: JobID.SIZE])


def object_id_for(task_id: bytes, index: int) -> bytes:
    """The id of return value `index` (1-based; 0 is a put) of `task_id`."""
    return task_id + struct.pack(">I", index)


NODE_TAG_BYTES = 4


def owner_tag(object_or_task_id: bytes) -> bytes:
    """The tag of the node whose node manager owns this task or object (its first bytes)."""
    return object_or_task_id[:NODE_TAG_BYTES]


class TaskIDFactory:
    """Makes task ids unique to this process: node tag, 4 random bytes, and a counter.

    The first 4 bytes name the node whose node manager owns the task and its returns (and
    every object put through it), so any node can tell an object's owner from its id.
    Thread-safe: `itertools.count` advances atomically under the GIL.
    """

    _node_tag = bytes(NODE_TAG_BYTES)
    _instances: list = []

    def __init__(self) -> None:
        self.reset()
        self._lock = threading.Lock()
        TaskIDFactory._instances.append(self)

    @classmethod
    def set_node_tag(cls, node_id: bytes) -> None:
        """Called once connected: ids made from now on name the node this process talks to."""
        cls._node_tag = bytes(node_id[:NODE_TAG_BYTES])
        for factory in cls._instances:
            factory.reset()

    def reset(self) -> None:
        """Called in a forked child (and on connecting) so it never repeats ids."""
        self._prefix = self._node_tag + os.urandom(8 - NODE_TAG_BYTES)
        self._counter = itertools.count(1)

    def next(self) -> bytes:
        return self._prefix + next(self._counter).to_bytes(8, "big")
