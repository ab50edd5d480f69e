"""Moving objects between nodes, and what happens when the node holding one dies.

A mixin of NodeManagerService. A node that needs an object stored on another node (its
directory entry is ready but `remote_objects` names the holder) pulls it: it allocates the
whole object in its own arena, then asks the holder for chunks, a few outstanding at a
time, writing each into place, so a large object never sits whole in Python memory. Several
objects transfer at once, each with its own window (pull_window): a chunk not there within
SHOAL_PULL_CHUNK_TIMEOUT_S is asked for again, and after SHOAL_PULL_CHUNK_ATTEMPTS the copy
counts as unavailable. The waiters (tasks about to run here, clients in get) continue when the
last chunk lands.

Chunks travel on each node's data port, a plain TCP socket beside the CURVE-encrypted
control port: encryption caps ZeroMQ near 0.25 GiB/s on this hardware, a plain socket moves
over 1 GiB/s. Every request on it is signed with a key derived from the cluster token
(`auth.sign`) and unsigned ones are dropped, so only token holders can read objects; the
bytes themselves are not encrypted (as in Ray's object transfers). Like the CURVE port, the
data port admits few connections per host that have not yet proved themselves, here with a
signed request, and closes those that have not by the handshake deadline (port_guard).

When the holder dies the value is forgotten (the entry goes back to pending) and its waiters
wait again: the owner re-runs the task that made it (lineage, recursively through its
arguments), a borrower asks the owner again, and a value nobody can rebuild becomes an
ObjectLostError that says why.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import zmq

from . import auth, port_guard, protocol
from .node_host import NodeHost
from .protocol import ObjectValue
from .pull_window import PullWindow

logger = logging.getLogger(__name__)

CHUNK_BYTES = 8 * 1024 * 1024
WINDOW_CHUNKS = 4


@dataclass
class Pull:
    object_id: bytes
    node: bytes
    offset: int
    size: int
    window: PullWindow
    waiters: list = field(default_factory=list)  # ("task", task id) / ("client", client id)


class ObjectTransfer(NodeHost):
    def _init_transfers(self) -> None:
        self.pulls: dict[bytes, Pull] = {}
        self.pull_backlog: list = []  # (object id, waiter) waiting for room in the arena
        self.relocate_later: set = set()  # located on a node not yet known to be dead by its owner

    # -- the puller -----------------------------------------------------------------------

    def _fetch_args(self, record) -> bool:
        """Start pulling a task's remote arguments; True if it must wait for them."""
        waiter = ("task", record.spec.task_id)
        pending = False
        for object_id in set(record.spec.arg_refs):
            if object_id in self.remote_objects:
                pending = True
                pull = self.pulls.get(object_id)
                if pull is None or waiter not in pull.waiters:
                    self._fetch(object_id, waiter)
        return pending

    def _fetch(self, object_id: bytes, waiter: tuple) -> None:
        pull = self.pulls.get(object_id)
        if pull is not None:
            pull.waiters.append(waiter)
            return
        node = self.remote_objects.get(object_id)
        entry = self.objects.get(object_id)
        if node is None or entry is None or entry.value is None:
            self._wake(waiter, object_id)
            return
        if not self.cluster.is_alive(node):
            self._object_unavailable(object_id, [waiter])
            return
        size = entry.value.shm_size
        offset, frees, error = self.store.allocate(self.node_id, size, self.objects)
        self._apply_frees(frees)
        if offset < 0:
            if error is None:
                self._revoke_for(size)
                self.pull_backlog.append((object_id, waiter))
                return
            self._replace_with_error(entry, "store_full", {"message": error}, [waiter])
            return
        window = PullWindow(
            size, CHUNK_BYTES, WINDOW_CHUNKS, self.config.pull_chunk_timeout_s, self.config.pull_chunk_attempts
        )
        pull = self.pulls[object_id] = Pull(object_id, node, offset, size, window, waiters=[waiter])
        if size == 0:
            self._pull_complete(pull)
            return
        self._request_chunks(pull)

    def _request_chunks(self, pull: Pull) -> None:
        self._ask_chunks(pull, pull.window.to_request(time.monotonic()))

    def _ask_chunks(self, pull: Pull, chunks: list) -> None:
        socket = self._data_socket(pull.node)
        for offset, length in chunks:
            if socket is None:
                self._send_peer(pull.node, protocol.PullChunk(pull.object_id, offset, length))
            else:
                mac = auth.sign(self.data_key, pull.object_id, b"%d" % offset, b"%d" % length)
                socket.send(protocol.encode(protocol.PullChunk(pull.object_id, offset, length, mac)))

    def _transfer_housekeeping(self, now: float) -> None:
        """Ask again for chunks that did not come; close data-port connections that never proved themselves."""
        for pull in list(self.pulls.values()):
            again = pull.window.overdue(now)
            if again is None:
                logger.warning(
                    "node %s did not send a chunk of %s after %d requests: its copy counts as unavailable",
                    pull.node.hex(),
                    pull.object_id.hex(),
                    pull.window.attempts,
                )
                self._pull_failed(pull)
            elif again:
                logger.info(
                    "asking node %s again for %d chunk(s) of %s", pull.node.hex(), len(again), pull.object_id.hex()
                )
                self._ask_chunks(pull, again)
        if self.data_router is not None:
            self.data_guard.drain(now)

    # -- the data port --------------------------------------------------------------------

    def _bind_data_port(self, host: str, token: str) -> None:
        self.data_key = auth.data_key(token)
        self.data_router = self.context.socket(zmq.ROUTER)
        self.data_router.setsockopt(zmq.LINGER, 0)
        self.data_router.setsockopt(zmq.MAXMSGSIZE, 4096)  # requests only: a few ids and numbers
        self.data_router.setsockopt(zmq.HANDSHAKE_IVL, max(1, int(self.config.handshake_timeout_s * 1000)))
        port = self.data_router.bind_to_random_port(f"tcp://{host}")
        self.data_endpoint = f"tcp://{host}:{port}"
        self.data_sockets: dict = {}  # node id -> DEALER to its data port
        self.socket_handlers[self.data_router] = self._serve_data_requests
        # Proven only by a signed request: one that sends none by the deadline is closed.
        self.data_guard = port_guard.PortGuard(self.data_router, port, self.config, self.faults, close_unproven=True)
        self.socket_handlers[self.data_guard.monitor] = lambda monitor: self.data_guard.drain(time.monotonic())

    def _data_socket(self, node_id: bytes):
        socket = self.data_sockets.get(node_id) if self.data_router is not None else None
        if socket is None and self.data_router is not None:
            info = self.cluster.nodes.get(node_id)
            if info is None or not info.alive or not info.data_endpoint:
                return None
            socket = self.context.socket(zmq.DEALER)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.RCVHWM, 0)
            socket.connect(info.data_endpoint)
            self.data_sockets[node_id] = socket
            self.socket_handlers[socket] = lambda s, node=node_id: self._receive_chunks(node, s)
            if getattr(self, "poller", None) is not None:
                self.poller.register(socket, zmq.POLLIN)
        return socket

    def _serve_data_requests(self, router) -> None:
        """Requests from anyone who can reach the port: checked field by field, then the signature."""
        for _ in range(256):
            try:
                received = router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            frames = [frame.bytes for frame in received]
            request = self._data_request(frames)
            if request is None:
                continue
            self.data_guard.proven(received[0].get(zmq.SRCFD))
            try:
                header, data = self._chunk_reply(request, view_ok=True)
                router.send_multipart([frames[0], protocol.encode(header), data], copy=True)
            except Exception:
                self.survived(f"serving {request.object_id.hex()} on the data port")
                continue
            if isinstance(data, memoryview):
                data.release()

    def _data_request(self, frames: list) -> protocol.PullChunk | None:
        """The signed PullChunk in a data-port message, or None (dropped and counted)."""
        if len(frames) != 2:
            self.dropped("malformed", f"a {len(frames) - 1}-frame message on the data port")
            return None
        request = self.checked_message(frames[1], frames[0], "data-port peer")
        if request is None:
            return None
        if type(request) is not protocol.PullChunk:
            self.dropped("unexpected", f"a {type(request).__name__} on the data port")
            return None
        if not auth.signature_ok(
            self.data_key, request.mac, request.object_id, b"%d" % request.offset, b"%d" % request.length
        ):
            self.dropped("unsigned", "a request on the data port without a valid signature")
            return None
        return request

    def _receive_chunks(self, node_id: bytes, socket) -> None:
        for _ in range(64):
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if len(frames) != 2:
                continue
            header = self.checked_message(frames[0].bytes, node_id, "the data port of node")
            if type(header) is protocol.ObjectChunk:
                self._on_object_chunk(node_id, header, frames[1].buffer)

    def _close_data_socket(self, node_id: bytes) -> None:
        socket = getattr(self, "data_sockets", {}).pop(node_id, None)
        if socket is not None:
            self.socket_handlers.pop(socket, None)
            if getattr(self, "poller", None) is not None:
                self.poller.unregister(socket)
            socket.close(linger=0)

    def _close_data_sockets(self) -> None:
        for node_id in list(getattr(self, "data_sockets", {})):
            self._close_data_socket(node_id)
        if self.data_router is not None:
            self.data_guard.close()
            self.data_router.close(linger=0)

    def _on_object_chunk(self, node_id, message: protocol.ObjectChunk, data) -> None:
        pull = self.pulls.get(message.object_id)
        if pull is None or (node_id is not None and pull.node != node_id):
            return
        if message.error is not None or message.offset + len(data) > pull.size:
            logger.warning("node %s has no copy of %s: %s", pull.node.hex(), pull.object_id.hex(), message.error)
            self._pull_failed(pull)
            return
        if not pull.window.arrived(message.offset, len(data)):
            return  # the late twin of a chunk asked for again
        view = self.store.arena.writable_view(pull.offset + message.offset, len(data))
        view[:] = data
        view.release()
        if pull.window.done:
            self._pull_complete(pull)
        else:
            self._request_chunks(pull)

    def _pull_complete(self, pull: Pull) -> None:
        del self.pulls[pull.object_id]
        entry = self.objects.get(pull.object_id)
        placed = ObjectValue(pull.object_id, None, pull.offset, pull.size)
        self.store.sealed(placed)
        if entry is None or entry.value is None or self.remote_objects.get(pull.object_id) != pull.node:
            self.store.free_offsets([pull.offset])
            for waiter in pull.waiters:
                self._wake(waiter, pull.object_id)
            return
        old = entry.value
        entry.value = ObjectValue(pull.object_id, None, pull.offset, pull.size, old.is_error, old.contained)
        self.objects.arena_bytes += pull.size
        del self.remote_objects[pull.object_id]
        for waiter in pull.waiters:
            self._wake(waiter, pull.object_id)

    def _pull_failed(self, pull: Pull) -> None:
        del self.pulls[pull.object_id]
        self.store.abort(self.node_id, [pull.offset])
        self._object_unavailable(pull.object_id, pull.waiters)

    def _wake(self, waiter: tuple, object_id: bytes) -> None:
        kind, ident = waiter
        if kind == "task":
            record = self.tasks.get(ident)
            if record is not None and record.state == "WAITING" and ident not in self.objects.task_missing:
                self._make_ready(record)
            return
        entry = self.objects.get(object_id)
        if ident in self.clients and entry is not None and entry.ready:
            value = self._deliverable(ident, entry, park=True)
            if value is not None:
                self._send(ident, protocol.ObjectsReady([value]))

    def _retry_pull_backlog(self) -> None:
        backlog, self.pull_backlog = self.pull_backlog, []
        for object_id, waiter in backlog:
            self._fetch(object_id, waiter)
        if self.relocate_later:
            for object_id in list(self.relocate_later):
                self.relocate_later.discard(object_id)
                self._object_unavailable(object_id, [])

    # -- the holder -----------------------------------------------------------------------

    def _on_pull_chunk(self, node_id: bytes, message: protocol.PullChunk) -> None:
        header, data = self._chunk_reply(message)
        self._send_peer(node_id, header, data)

    def _chunk_reply(self, message: protocol.PullChunk, view_ok: bool = False) -> tuple:
        """(ObjectChunk, its bytes). With `view_ok` the bytes may be a view of the arena,
        which the caller sends at once (copying) and then releases."""
        entry = self.objects.get(message.object_id)
        if entry is None or entry.value is None or message.object_id in self.remote_objects:
            return protocol.ObjectChunk(message.object_id, message.offset, 0, "no copy on this node"), b""
        value = entry.value
        start, end = message.offset, message.offset + message.length
        if value.data is not None:
            data = value.data[start:end]
        elif value.shm_offset >= 0:
            view = self.store.arena.writable_view(value.shm_offset + start, max(0, min(end, value.shm_size) - start))
            if view_ok:
                data = view
            else:
                data = bytes(view)
                view.release()
        else:
            assert entry.spill_path is not None  # neither inline nor in the arena: spilled
            with open(entry.spill_path, "rb") as handle:
                handle.seek(start)
                data = handle.read(message.length)
        size = len(value.data) if value.data is not None else value.shm_size
        return protocol.ObjectChunk(message.object_id, start, size), data

    # -- losing a copy --------------------------------------------------------------------

    def _objects_lost_with(self, node_id: bytes) -> None:
        self._close_data_socket(node_id)
        for pull in [p for p in self.pulls.values() if p.node == node_id]:
            self._pull_failed(pull)
        for object_id in [o for o, holder in self.held_remotely.items() if holder == node_id]:
            del self.held_remotely[object_id]
        for object_id in [o for o, holder in self.remote_objects.items() if holder == node_id]:
            self._object_unavailable(object_id, [])

    def _object_unavailable(self, object_id: bytes, waiters: list) -> None:
        """The copy we knew of is gone: wait again, and rebuild or re-locate the value."""
        entry = self.objects.get(object_id)
        self.remote_objects.pop(object_id, None)
        if entry is None:
            return
        if entry.value is not None:
            self._apply_frees(self.objects.unseal(object_id))
        for kind, ident in waiters:
            if kind == "task":
                record = self.tasks.get(ident)
                if record is not None and record.state == "WAITING":
                    self.objects.add_waiting_task(ident, object_id)
            elif ident in self.clients:
                self.objects.subscribe(ident, object_id)
        owner = self.owner_node(object_id)
        if owner is not None:
            self.watching.discard(object_id)
            self._watch_foreign([object_id])
            return
        kept = self.lineage.get(object_id[:-4])
        if kept is None:
            reason = "put" if object_id.endswith(b"\x00\x00\x00\x00") else "lineage"
            error = self.make_error_value(
                "object_lost",
                None,
                {
                    "object_id": object_id.hex(),
                    "reason": reason,
                    "owner": f"node {self.node_id.hex()}",
                },
            )
            self._publish(ObjectValue(object_id, error.data, -1, 0, True, []), None)
            return
        self._reconstruct(kept[0])

    def _reconstruct(self, spec) -> None:
        """Re-run the task that made a lost value (its arguments are still held)."""
        task_id = spec.task_id
        if task_id in self.tasks:
            return
        logger.info("rebuilding the values of task %s (%s) from lineage", task_id.hex(), spec.function_name)
        spec = dataclasses.replace(spec, attempt=spec.attempt + 1)
        self.lineage[task_id][0] = spec
        record = self.new_task_record(spec)
        record.reconstruction = True
        self.tasks[task_id] = record
        self.objects.hold(list(spec.arg_refs) + list(spec.contained or ()))
        if self.objects.wait_for_args(task_id, spec.arg_refs):
            self._make_ready(record)
        else:
            self._watch_foreign(spec.arg_refs)
            for object_id in spec.arg_refs:
                entry = self.objects.get(object_id)
                if entry is not None and not entry.ready and self.owner_node(object_id) is None:
                    kept = self.lineage.get(object_id[:-4])
                    if kept is not None:
                        self._reconstruct(kept[0])

    def _replace_with_error(self, entry, kind: str, details: dict, waiters: list) -> None:
        error = self.make_error_value(kind, None, details)
        self.remote_objects.pop(entry.object_id, None)
        entry.value = ObjectValue(entry.object_id, error.data, -1, 0, True, [])
        for waiter in waiters:
            self._wake(waiter, entry.object_id)

    def pull_rows(self) -> list:
        now = time.monotonic()
        return [
            {
                "object_id": p.object_id.hex(),
                "from": p.node.hex(),
                "size": p.size,
                "received": p.window.received,
                "at": now,
            }
            for p in self.pulls.values()
        ]
