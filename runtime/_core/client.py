"""The core client: every shoal process's connection to its node manager.

    any thread ──(send lock)──> send DEALER ──────────────> node manager
                                                               │
    shoal-io thread <── receive DEALER <───────────────────────┘ arrivals, replies, tasks
         └──> LocalObjects (condition) / inbox ──> waiting user threads, the executor

Two sockets: whichever thread has something to send flushes the queues itself under the send
lock (no thread hand-off on the way out); the I/O thread owns the receive socket, and also
flushes reference changes and released pins every few tens of milliseconds. The node manager
sees one client: the send socket's identity is the client id plus one byte. Callers never
block on the network: to wait, they sleep on LocalObjects' condition. Each flush sends one
multipart message (see `_flush` for the order it keeps).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from . import config, lifecycle, protocol, tcp_frames
from .ids import TaskIDFactory
from .local_objects import LocalObjects
from .protocol import TaskResult, TaskSpec

logger = logging.getLogger(__name__)


_REPLIES = (
    protocol.AllocateObjectReply,
    protocol.ClusterInfoReply,
    protocol.ActorReply,
    protocol.ListActorsReply,
    protocol.StateReply,
)


_REFUSED = object()  # the token is wrong
_CROWDED = object()  # the node's gate kept turning this host away (port_guard)
KEEPALIVE_INTERVAL_S = 1.0  # clients connected over TCP say they are alive this often
_ENVELOPE_MAX_BYTES = 1 << 20  # a payload this far below the limit fits whatever message carries it
_LENGTH_HEADER_BYTES = 8  # msgpack writes a long bytes field's length in up to 4 more bytes than an empty one's


class _Reply:
    __slots__ = ("event", "value")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.value: Any = None


class CoreClient:
    def __init__(
        self,
        endpoint: str,
        kind: str,
        client_id: bytes | None = None,
        namespace: str | None = None,
        token: str | None = None,
    ):
        self.endpoint = endpoint
        self.token = token
        self.remote = endpoint.startswith("tcp://")  # another machine: objects travel inline
        self.kind = kind
        self.client_id = client_id or os.urandom(16)
        self.namespace = namespace
        self.objects = LocalObjects()
        self.outgoing: deque = deque()
        self.log_records: deque = deque()
        self.exported: set[bytes] = set()
        self.functions: dict[bytes, bytes] = {}
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._on_cancel: Callable[[bytes, bool], None] | None = None
        self._early_cancels: list[tuple[bytes, bool]] = []  # arrived before a worker listened
        self._cancel_lock = threading.Lock()
        self.on_logs: Callable[[list], None] | None = None
        self.on_block: Callable[[bool], None] | None = None
        self.arena = None
        self._node_info: protocol.RegisterClientReply | None = None
        self._requests: dict[int, _Reply] = {}
        self._request_ids = itertools.count(1)
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._send_lock = threading.Lock()
        self._wake_pending = False
        self.send_socket = None
        self._closing = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.disconnected_reason: str | None = None
        self._last_heard = time.monotonic()
        self._node_timeout_s = config.load_config().node_timeout_s

    @property
    def node_info(self) -> protocol.RegisterClientReply:
        """What the node manager said when this client registered (its node, resources, paths)."""
        if self._node_info is None:
            raise RuntimeError("the shoal client is not connected to a node manager yet")
        return self._node_info

    @property
    def connected(self) -> bool:
        return self._node_info is not None

    @property
    def max_message_bytes(self) -> int:
        """The largest message this client may send, 0 for no limit: over TCP, the node's SHOAL_MAX_MESSAGE_BYTES."""
        return self._node_info.max_message_bytes if self.remote and self._node_info is not None else 0

    def ensure_fits(self, envelope, payload_bytes: int, what: str) -> None:
        """Raise now if `envelope` (a message with its payload left out) plus `payload_bytes` is more than
        the node takes: it would drop the message unanswered, and the caller would wait for nothing.

        Raises:
            ValueError: the message is over the cluster's SHOAL_MAX_MESSAGE_BYTES.
        """
        limit = self.max_message_bytes
        if not limit or payload_bytes <= limit - _ENVELOPE_MAX_BYTES:
            return
        size = len(protocol.encode(envelope)) + payload_bytes + _LENGTH_HEADER_BYTES
        if size > limit:
            raise ValueError(
                f"{what} is {size:,} bytes as a message, more than the shoal cluster at {self.endpoint} takes "
                f"from a driver connected over TCP: SHOAL_MAX_MESSAGE_BYTES={limit:,} on its nodes. Send it in "
                "smaller pieces, raise SHOAL_MAX_MESSAGE_BYTES where the cluster is started, or run the driver "
                "on a machine of the cluster (over ipc there is no such limit)."
            )

    # -- lifecycle --------------------------------------------------------------------------

    def _dealer(self, identity: bytes):
        socket = self.context.socket(zmq.DEALER)
        socket.setsockopt(zmq.IDENTITY, identity)
        socket.setsockopt(zmq.LINGER, 2000)
        socket.setsockopt(zmq.SNDHWM, 0)
        socket.setsockopt(zmq.RCVHWM, 0)
        socket.setsockopt(zmq.RECONNECT_IVL, 20)
        if self.remote:
            from . import auth

            auth.secure_client(socket, self.token or "")
        socket.connect(self.endpoint)
        return socket

    def connect(self, timeout_s: float | None = None) -> protocol.RegisterClientReply:
        """Register with the node manager; `timeout_s` defaults to SHOAL_CONNECT_TIMEOUT_S.

        Raises:
            ConnectionError: no answer in time, or over TCP the node refused the connection (a
                wrong token, or too many unauthenticated connections from this host).
        """
        if timeout_s is None:
            timeout_s = config.load_config().connect_timeout_s
        self.context = zmq.Context(io_threads=1)
        self.socket = self._dealer(self.client_id)
        monitor = self.socket.get_monitor_socket() if self.remote else None
        self.send_socket = self._dealer(self.client_id + b"\x01")
        registered = self._requests[-1] = _Reply()
        self._thread = threading.Thread(target=self._run, name=f"shoal-io-{self.kind}", daemon=True)
        self._thread.start()
        try:
            reply = self._await_registration(registered, monitor, timeout_s)
        finally:
            self._requests.pop(-1, None)
            if monitor is not None:
                monitor.close(linger=0)
        if reply is _REFUSED:
            self.close()
            raise ConnectionError(
                f"the shoal cluster at {self.endpoint} refused the connection: the token is wrong "
                "or missing (set SHOAL_TOKEN to the token in the file `shoal start` printed)"
            )
        if reply is _CROWDED:
            self.close()
            raise ConnectionError(
                f"the shoal cluster at {self.endpoint} kept refusing the connection for {timeout_s:g} s, "
                "before the token could be checked: too many connections from this host had not finished "
                "the handshake (more than SHOAL_MAX_UNAUTHENTICATED_PER_HOST on the cluster's nodes, or "
                "SHOAL_MAX_UNAUTHENTICATED_CONNECTIONS in all). Something may be flooding the cluster's port; "
                "try again once it stops, or raise the limits where the cluster is started"
            )
        if reply is None:
            self.close()
            raise ConnectionError(f"no answer from the shoal node manager at {self.endpoint} within {timeout_s} s")
        assert isinstance(reply, protocol.RegisterClientReply)  # the only message resolving request -1 (_handle)
        self._node_info = reply
        TaskIDFactory.set_node_tag(reply.node_id)
        if not self.remote:
            from .shared_arena import SharedArena

            pid, fd, capacity = reply.arena
            self.arena = SharedArena.attach(pid, fd, capacity)
        return reply

    def _await_registration(self, registered: _Reply, monitor, timeout_s: float):
        """Wait for the node manager's answer; over TCP, fail fast if the token is refused."""
        if monitor is None:
            return registered.value if registered.event.wait(timeout_s) else None
        from .handshake_watch import HandshakeWatch

        watch = HandshakeWatch(monitor, self.endpoint, min(1.0, config.load_config().handshake_timeout_s / 2))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if registered.event.wait(0.05):
                return registered.value
            if watch.token_refused():
                return _REFUSED
        return _CROWDED if watch.crowded else None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self.outgoing.append(protocol.Disconnect("closed"))
            self.flush()
            self._closing = True
            self._wake()
            self._thread.join(timeout=5)
            with self._send_lock:
                assert self.send_socket is not None  # connect() made it before starting the thread
                self.send_socket.close(linger=1000)
                self.send_socket = None
            try:
                self.context.term()
            except Exception:
                pass
        self.objects.close("shoal client closed")
        for reply in list(self._requests.values()):
            reply.event.set()
        if self.arena is not None:
            # Arrays still alive keep their mapping until they are collected.
            self.arena.close()
        try:
            os.close(self._wake_fd)
        except OSError:
            pass

    # -- thread-safe entry points -----------------------------------------------------------

    def _wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            try:
                os.eventfd_write(self._wake_fd, 1)
            except OSError:
                pass

    def flush(self) -> None:
        """Send everything queued so far, from the calling thread."""
        with self._send_lock:
            if self.send_socket is not None:
                self._flush()

    def send(self, message) -> None:
        self.outgoing.append(message)
        self.flush()

    def add_ref(self, object_id: bytes) -> None:
        """Reference changes travel in the send queue, in order with the messages."""
        self.outgoing.append((object_id, 1))

    def remove_ref(self, object_id: bytes) -> None:
        self.outgoing.append((object_id, -1))

    def export_function(self, function_id: bytes, payload: bytes) -> None:
        if function_id not in self.exported:
            self.ensure_fits(
                protocol.ExportFunction(function_id, b""),
                len(payload),
                "The pickled definition of this function or class (its code and the variables it captures)",
            )
            self.exported.add(function_id)
            self.outgoing.append(protocol.ExportFunction(function_id, payload))

    def submit(self, spec: TaskSpec, return_ids: list) -> None:
        if spec.args is not None:
            self.ensure_fits(
                protocol.SubmitTasks([dataclasses.replace(spec, args=b"")]),
                len(spec.args),
                f"A call of {spec.function_name} with its arguments",
            )
        self.objects.expect(return_ids)
        self.outgoing.append(spec)
        # Batched by the I/O thread; a get() or wait() flushes at once (see flush_pending).
        self._wake()

    def request(self, make_message, timeout_s: float | None = None, reply_key: int | None = None):
        """Send a request built by `make_message(request_id)` and wait for its reply."""
        request_id = reply_key if reply_key is not None else next(self._request_ids)
        reply = self._requests[request_id] = _Reply()
        self.send(make_message(request_id))
        try:
            if not reply.event.wait(timeout_s):
                return None
            return reply.value
        finally:
            self._requests.pop(request_id, None)

    def request_objects(self, object_ids: list) -> None:
        self.send(protocol.GetObjects(list(object_ids)))

    def publish_log(self, record: protocol.LogRecord) -> None:
        self.log_records.append(record)

    def finish_task(self, result: TaskResult) -> None:
        self.outgoing.append(result)
        if self.inbox.empty():
            self.flush()  # nothing else queued here: report now, for latency
        else:
            self._wake()  # more tasks queued: let results batch up

    def flush_pending(self) -> None:
        """Before waiting: send whatever this process has queued (submits, results)."""
        if self.outgoing:
            self.flush()

    def blocked(self, blocked: bool, returned: list) -> None:
        self.send(protocol.WorkerBlocked(blocked, returned))

    # -- the I/O thread ---------------------------------------------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self._wake_fd, zmq.POLLIN)
        # Registering on the receive socket tells the node manager where replies go.
        self.socket.send(
            protocol.encode(protocol.RegisterClient(self.client_id, os.getpid(), self.kind, self.namespace))
        )
        check_at = time.monotonic() + KEEPALIVE_INTERVAL_S
        try:
            while not self._closing:
                events = dict(poller.poll(50))
                if time.monotonic() >= check_at:
                    check_at = time.monotonic() + KEEPALIVE_INTERVAL_S
                    self._check_node_manager()
                if self._wake_fd in events:
                    try:
                        os.eventfd_read(self._wake_fd)
                    except (BlockingIOError, OSError):
                        pass
                self._wake_pending = False
                if self.socket in events:
                    self._receive()
                if self.outgoing or self.objects.released_pins or self.log_records:
                    self.flush()
        except Exception:
            logger.exception("shoal I/O thread failed")
            self.objects.close("the shoal I/O thread failed; see the log")
        finally:
            try:
                self.socket.close(linger=0)
            except Exception:
                pass

    def _check_node_manager(self) -> None:
        """Notice a node manager that died without a word, rather than wait on it forever."""
        if self._node_info is None or self.objects.closed_reason is not None:
            return
        if self.remote:
            # Over TCP neither side can see the other die: each says it is alive.
            self.send(protocol.Keepalive())
            silent = time.monotonic() - self._last_heard
            if silent > self._node_timeout_s:
                self._lost(f"no word from the shoal cluster at {self.endpoint} for {silent:.0f} s")
        elif self.node_info.node_manager_pid and not lifecycle.pid_alive(self.node_info.node_manager_pid):
            reason = f"the shoal node manager (pid {self.node_info.node_manager_pid}) died"
            kept = lifecycle.keep_logs(self.node_info.session_dir) if self.kind == "driver" else None
            self._lost(f"{reason}; its logs are in {kept}" if kept else reason)

    def _lost(self, reason: str) -> None:
        self.disconnected_reason = reason
        self.objects.close(reason)
        self.inbox.put(None)

    def _receive(self) -> None:
        for _ in range(1000):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._last_heard = time.monotonic()
            for frame in frames:
                try:
                    message = protocol.decode(frame)
                except ValueError as exc:
                    logger.warning("dropping malformed message from the node manager: %s", exc)
                    continue
                try:
                    self._handle(message)
                except Exception:
                    logger.exception("error handling %s", type(message).__name__)

    def _handle(self, message) -> None:
        kind = type(message)
        if kind is protocol.ObjectsReady:
            self.objects.arrived(message.values)
        elif kind is protocol.ExecuteTasks:
            self.functions.update(message.functions)
            for task in message.tasks:
                self.inbox.put(task)
        elif kind in _REPLIES:
            self._resolve(message.request_id, message)
        elif kind is protocol.RegisterClientReply:
            self._resolve(-1, message)
        elif kind is protocol.RevokePins:
            kept = self.objects.revoke(message.object_ids)
            if kept:
                self.outgoing.append(protocol.RevokePinsReply(kept))  # sent after the pins handed back
        elif kind is protocol.CancelRunning:
            with self._cancel_lock:
                handler = self._on_cancel
                if handler is None:
                    self._early_cancels.append((message.task_id, message.force))
            if handler is not None:
                handler(message.task_id, message.force)
        elif kind is protocol.PublishLogs:
            if self.on_logs is not None:
                self.on_logs(message.records)
        elif kind is protocol.ShuttingDown:
            self.disconnected_reason = f"the shoal cluster shut down ({message.reason})"
            self.objects.close(self.disconnected_reason)
            self.inbox.put(None)

    def listen_for_cancels(self, handler: Callable[[bytes, bool], None]) -> None:
        """Call `handler(task_id, force)` for each CancelRunning, on the I/O thread; those that came
        before (a worker's first tasks can be cancelled as soon as it registers) are passed at once."""
        with self._cancel_lock:
            self._on_cancel = handler
            early, self._early_cancels = self._early_cancels, []
        for task_id, force in early:
            handler(task_id, force)

    def _resolve(self, request_id: int, message) -> None:
        reply = self._requests.get(request_id)
        if reply is not None:
            reply.value = message
            reply.event.set()

    def _flush(self) -> None:
        """Send the queue as one multipart message, keeping what ordering requires.

        Reference increments go first (earlier is always safe). Task specs and results are
        merged into one SubmitTasks / TasksDone each. Decrements, with the pins they free,
        go out after those and before the next other message: a reference is never dropped
        before a message queued while it was alive, and it is dropped before a request queued
        after it (so a freed object makes room for the next allocation).
        """
        body: list = []
        increments: dict = {}
        events: list = []
        specs: list = []
        results: list = []
        outgoing = self.outgoing
        while outgoing:
            message = outgoing.popleft()
            kind = type(message)
            if kind is tuple:
                events.append(message)
                if message[1] > 0:
                    increments[message[0]] = increments.get(message[0], 0) + message[1]
            elif kind is TaskSpec:
                specs.append(message)
            elif kind is TaskResult:
                results.append(message)
            else:
                self._emit_batches(body, specs, results, events)
                specs, results, events = [], [], []
                body.append(protocol.encode(message))
        self._emit_batches(body, specs, results, events)
        frames = []
        if self.log_records:
            records = []
            while self.log_records:
                records.append(self.log_records.popleft())
            # A task's output is queued before its result, so it goes out first.
            frames.append(protocol.encode(protocol.PublishLogs(records)))
        if increments:
            frames.append(protocol.encode(protocol.UpdateReferences(increments, [], [])))
        frames += body
        if frames:
            assert self.send_socket is not None  # flush() checks it under the send lock
            if self.remote:
                frames = tcp_frames.split(frames)  # the node's CURVE port takes small frames only
            self.send_socket.send_multipart(frames, copy=not self.remote)

    def _emit_batches(self, body: list, specs: list, results: list, events: list) -> None:
        if specs:
            body += self._encode_submits(specs)
        if results:
            body.append(protocol.encode(protocol.TasksDone(results)))
        decrements: dict = {}
        if events:
            _, decrements = self.objects.apply_ref_events(events)
        pins = self.objects.take_released_pins()
        if decrements or pins:
            body.append(protocol.encode(protocol.UpdateReferences(decrements, pins, [])))

    def _encode_submits(self, specs: list) -> list:
        """SubmitTasks frames for `specs`: one, or over TCP as many as keep each within the node's limit."""
        frame = protocol.encode(protocol.SubmitTasks(specs))
        limit = self.max_message_bytes
        if not limit or len(frame) <= limit or len(specs) == 1:
            return [frame]  # one spec alone always fits: submit() checked it
        half = len(specs) // 2
        return self._encode_submits(specs[:half]) + self._encode_submits(specs[half:])


_current: CoreClient | None = None


def current() -> CoreClient | None:
    return _current


def set_current(client: CoreClient | None) -> None:
    global _current
    _current = client


__all__ = ["CoreClient", "current", "set_current"]
