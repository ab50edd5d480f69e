"""Reading and writing object values in a client process (driver or worker).

Small values are inline bytes; large ones are written into the node's arena after one
allocation round trip and read back zero-copy through a pinned read-only view.
"""

from __future__ import annotations

from . import config, serialization
from .protocol import AllocateObject, ObjectValue, PutObjects


def materialize(client, value: ObjectValue):
    """Deserialize a delivered value; arena memory stays pinned while arrays use it."""
    if value.data is not None:
        return serialization.deserialize_bytes(value.data)
    objects = client.objects
    object_id = value.object_id

    def release() -> None:
        with objects.cond:
            objects.released_pins.append(object_id)

    view = client.arena.read_view(value.shm_offset, value.shm_size, release)
    return serialization.deserialize(view)


def materialize_location(client, location):
    """Deserialize from a cached pinned location (see LocalObjects.collect)."""
    value = location.value
    objects = client.objects
    view = client.arena.read_view(value.shm_offset, value.shm_size, lambda: objects.view_released(location))
    return serialization.deserialize(view)


def put_serialized(client, object_id: bytes, serialized, what: str = "The object") -> None:
    """Store a put value: inline or in the arena, known here and told to the node manager.

    The caller holds a ref to `object_id` already, so the node manager counts it from the start.

    Raises:
        ValueError: over TCP, the value is more than the cluster takes in one message (`what` names it).
    """
    if client.remote:
        envelope = PutObjects([ObjectValue(object_id, b"", -1, 0, False, serialized.contained)])
        client.ensure_fits(envelope, serialized.total_bytes, what)
    value = store_serialized(client, object_id, serialized, config.INLINE_OBJECT_MAX_BYTES)
    # The node manager pins an arena object for its putter, so the putter's get is local.
    client.objects.put_local(value, pinned=value.data is None)
    client.send(PutObjects([value]))


def store_serialized(client, object_id: bytes, serialized, inline_max: int) -> ObjectValue:
    """Inline small values; write large ones into the arena."""
    if serialized.total_bytes <= inline_max or client.arena is None:
        # Small, or a remote client that cannot reach the node's shared memory.
        return ObjectValue(object_id, serialized.to_bytes(), -1, 0, False, serialized.contained)
    size = serialized.total_bytes
    reply = client.request(lambda request_id: AllocateObject(request_id, size))
    if reply is None or reply.offset < 0:
        from ..exceptions import ObjectStoreFullError

        raise ObjectStoreFullError(reply.error if reply is not None else "no reply from the node manager")
    view = client.arena.writable_view(reply.offset, size)
    try:
        serialized.write_into(view)
    finally:
        view.release()
    return ObjectValue(object_id, None, reply.offset, size, False, serialized.contained)
