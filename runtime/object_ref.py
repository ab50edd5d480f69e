"""ObjectRef: the name of an object in the cluster, counted while it lives.

Creating and dropping a ref only appends to a deque of the process's core client (safe from
any thread and from the garbage collector); the client's I/O thread folds those events into
reference-count updates for the node manager.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

from ._core import client as _client
from ._core.serialization import note_contained_ref


class ObjectRef:
    """A reference to a value produced by a task or `put`. Pass it around; `get` it to read."""

    __slots__ = ("_id", "_client", "__weakref__")

    def __init__(self, object_id: bytes, _client_override=None):
        if not isinstance(object_id, bytes) or len(object_id) != 20:
            raise TypeError("ObjectRef needs the 20-byte binary id of an object")
        self._id = bytes(object_id)
        client = _client_override if _client_override is not None else _client.current()
        self._client = client
        if client is not None:
            client.outgoing.append((self._id, 1))

    def __del__(self):
        client = self._client
        if client is not None:
            try:
                client.outgoing.append((self._id, -1))
            except Exception:
                pass

    def __reduce__(self):
        note_contained_ref(self._id)
        return (_rebuild_ref, (self._id,))

    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def task_id(self):
        from ._core.ids import TaskID

        return TaskID(self._id[:16])

    def is_nil(self) -> bool:
        return self._id == b"\xff" * 20

    def __eq__(self, other) -> bool:
        return type(other) is ObjectRef and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return f"ObjectRef({self._id.hex()})"

    def get(self, timeout: float | None = None):
        """Same as `shoal.get(ref, timeout=...)`."""
        from . import api

        return api.get(self, timeout=timeout)

    def future(self) -> concurrent.futures.Future:
        """A concurrent.futures.Future that completes with the value (or its error)."""
        future: concurrent.futures.Future = concurrent.futures.Future()

        def resolve() -> None:
            from . import api

            try:
                future.set_result(api.get(self))
            except BaseException as exc:  # noqa: BLE001
                future.set_exception(exc)

        threading.Thread(target=resolve, name="shoal-ref-future", daemon=True).start()
        return future

    def __await__(self):
        return asyncio.wrap_future(self.future()).__await__()


def _rebuild_ref(object_id: bytes) -> ObjectRef:
    return ObjectRef(object_id)
