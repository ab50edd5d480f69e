"""The node manager's cluster side: joining, heartbeats, spillback, borrowing across nodes.

A mixin of NodeManagerService. Every node manager listens on a CURVE-authenticated TCP port
and keeps one DEALER to each other live node (identity: its node id + b"P"), so peers talk
in both directions without replies crossing sockets. The head keeps the node table: nodes
register with it and send a heartbeat every interval; it declares a node dead after
`node_timeout_s` of silence and sends the table to every node each interval. A node that
stops hearing the table for that long takes the head for dead and stops.

Ownership is per node: the node manager that received a task (or a put) owns its returns,
and object ids start with the owner's 4-byte tag (ids.py). A node that uses another node's
object borrows it (UpdateBorrows +1 / -1) and asks the owner where it is (WatchObjects);
the owner answers with the value (small) or the node that stores it, and the borrower pulls
it from there (object_transfer.py). A task the owner cannot run now, or that needs a
resource only another node has, is forwarded (ForwardTasks); the node that runs it keeps
arena results for the owner until told to release them and sends the rest back inline.
"""

from __future__ import annotations

import logging
import time

import zmq

from . import auth, message_schema, protocol, tcp_frames
from .cluster_table import LOCAL, ClusterTable, NodeInfo
from .handshake_watch import HandshakeWatch
from .ids import NODE_TAG_BYTES, owner_tag
from .node_host import NodeHost
from .protocol import ObjectValue
from .scheduling import fits, to_shape

logger = logging.getLogger(__name__)

PEER_SUFFIX = b"P"
LOCALITY_MIN_BYTES = 1024 * 1024  # arguments smaller than this do not pull a task to their node


_INTRODUCTIONS = (protocol.RegisterNode, protocol.NodeTable)  # accepted from nodes not yet known


class ClusterPeers(NodeHost):
    # -- setup ----------------------------------------------------------------------------

    def _init_cluster(self) -> None:
        self.cluster = ClusterTable(self.node_id)
        self.tag = self.node_id[:NODE_TAG_BYTES]
        self.head_address = self.options.get("head_address")
        self.is_head = self.head_address is None
        self.peer_sockets: dict[bytes, zmq.Socket] = {}
        self.peer_outbox: dict[bytes, list] = {}
        self.peer_functions: dict[bytes, set] = {}
        self.tag_nodes: dict[bytes, bytes] = {}
        self.remote_objects: dict[bytes, bytes] = {}  # object id -> node holding the value
        self.held_remotely: dict[bytes, bytes] = {}  # owned here, a copy kept for us elsewhere
        self.lineage: dict[bytes, list] = {}  # task id -> [spec, live result ids]
        self.watching: set = set()
        self.borrowed: set = set()
        self._suppress_borrow = False
        self.head_socket = None
        self.last_table_at = time.monotonic()
        self._peer_handlers = {
            protocol.RegisterNode: self._on_register_node,
            protocol.NodeHeartbeat: self._on_heartbeat,
            protocol.NodeTable: self._on_node_table,
            protocol.ForwardTasks: self._on_forward_tasks,
            protocol.ForwardedDone: self._on_forwarded_done,
            protocol.WatchObjects: self._on_watch_objects,
            protocol.ObjectLocations: self._on_object_locations,
            protocol.PullChunk: self._on_pull_chunk,
            protocol.UpdateBorrows: self._on_update_borrows,
            protocol.ReleaseObjects: self._on_release_objects,
            protocol.CancelTask: lambda node, m: self._cancel(m.task_id, m.force, m.recursive),
            protocol.PublishLogs: lambda node, m: self._on_logs(node, m),
            protocol.Disconnect: self._on_peer_leaving,
            protocol.StateQuery: self._on_peer_state_query,
            protocol.StateReply: self._on_peer_state_reply,
        }
        self.state_queries: dict[int, dict] = {}
        self._state_query_ids = 0

    def _self_info(self) -> NodeInfo:
        return NodeInfo(
            self.node_id,
            getattr(self, "tcp_endpoint", ""),
            self.node_ip,
            dict(self.scheduler.total),
            dict(self.scheduler.available),
            True,
            self.is_head,
            self.store.capacity_bytes,
            self.store.used_bytes,
            len(self.worker_pids),
            time.monotonic(),
            self.started_at,
            data_endpoint=self.data_endpoint,
        )

    def _join_cluster(self, timeout_s: float) -> None:
        """A worker node: register with the head and wait for the first node table."""
        assert self.head_address is not None and self.tcp_router is not None  # start() bound TCP: not the head
        host, _, port = self.head_address.rpartition(":")
        socket = self.head_socket = self._dealer_to(f"tcp://{host}:{port}")
        monitor = socket.get_monitor_socket()
        socket.send(
            protocol.encode(
                protocol.RegisterNode(
                    self.node_id,
                    self.tcp_endpoint,
                    self.node_ip,
                    self.scheduler.total_dict(),
                    self.store.capacity_bytes,
                    self.data_endpoint,
                )
            )
        )
        # The head answers through its own connection to our port, with the node table.
        watch = HandshakeWatch(monitor, f"tcp://{host}:{port}", min(1.0, self.config.handshake_timeout_s / 2))
        deadline = time.monotonic() + timeout_s
        try:
            while self.cluster_head_id() is None:
                if watch.token_refused():
                    raise ConnectionError(
                        f"the shoal head at {self.head_address} refused this node: the token is wrong "
                        "(pass the head's token file with --token-file, or set SHOAL_TOKEN)"
                    )
                if time.monotonic() > deadline and watch.crowded:
                    raise ConnectionError(
                        f"the shoal head at {self.head_address} kept refusing this node for {timeout_s:g} s, "
                        "before the token could be checked: too many connections from this host had not "
                        "finished the handshake (more than SHOAL_MAX_UNAUTHENTICATED_PER_HOST on the head, or "
                        "SHOAL_MAX_UNAUTHENTICATED_CONNECTIONS in all); try again once they stop"
                    )
                if time.monotonic() > deadline:
                    raise ConnectionError(
                        f"no answer from a shoal head at {self.head_address} within {timeout_s:g} s: no head "
                        "listens there, or the token is wrong (pass --token-file or set SHOAL_TOKEN)"
                    )
                if self.tcp_router.poll(50):
                    frames = self.tcp_router.recv_multipart()
                    if frames[0][16:] == PEER_SUFFIX:
                        self._on_peer_frames(frames[0][:16], frames[1:])
        finally:
            socket.disable_monitor()
            monitor.close(linger=0)

    def _dealer_to(self, endpoint: str):
        socket = self.context.socket(zmq.DEALER)
        socket.setsockopt(zmq.IDENTITY, self.node_id + PEER_SUFFIX)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDHWM, 0)
        socket.setsockopt(zmq.RCVHWM, 0)
        socket.setsockopt(zmq.RECONNECT_IVL, 100)
        auth.secure_client(socket, self.options["token"])
        socket.connect(endpoint)
        return socket

    def _peer_socket(self, node_id: bytes):
        socket = self.peer_sockets.get(node_id)
        if socket is None:
            info = self.cluster.nodes.get(node_id)
            if info is None or not info.alive:
                return None
            if self.head_socket is not None and info.is_head:
                socket = self.head_socket
            else:
                socket = self._dealer_to(info.endpoint)
            self.peer_sockets[node_id] = socket
        return socket

    def _close_peers(self) -> None:
        # A moment of linger lets the goodbye (and anything queued with it) go out.
        for socket in self.peer_sockets.values():
            socket.close(linger=500)
        if self.head_socket is not None and self.head_socket not in self.peer_sockets.values():
            self.head_socket.close(linger=0)

    # -- sending --------------------------------------------------------------------------

    def _send_peer(self, node_id: bytes, message, data=None) -> None:
        """Queue a message for a peer; consecutive messages of a batchable kind are merged."""
        box = self.peer_outbox.setdefault(node_id, [])
        if data is None and box and box[-1][1] is None:
            last = box[-1][0]
            if type(last) is type(message) is protocol.UpdateBorrows:
                for object_id, delta in message.deltas.items():
                    last.deltas[object_id] = last.deltas.get(object_id, 0) + delta
                return
            if type(last) is type(message) is protocol.ForwardTasks:
                last.specs.extend(message.specs)
                last.functions.update(message.functions)
                return
        box.append((message, data))

    def _flush_peers(self) -> None:
        outbox, self.peer_outbox = self.peer_outbox, {}
        for node_id, messages in outbox.items():
            socket = self._peer_socket(node_id)
            if socket is None:
                continue
            frames = []
            for message, data in messages:
                frames.append(protocol.encode(message))
                if data is not None:
                    frames.append(data)
            try:
                socket.send_multipart(tcp_frames.split(frames), zmq.NOBLOCK, copy=False)
            except zmq.ZMQError as exc:
                logger.warning("could not send to node %s: %s", node_id.hex(), exc)

    # -- receiving ------------------------------------------------------------------------

    def _on_peer_frames(self, node_id: bytes | None, frames: list) -> None:
        """Messages from another node manager; an ObjectChunk is followed by its bytes."""
        sender = (node_id or b"").hex()
        try:
            frames = tcp_frames.join(frames, self.config.max_message_bytes)
        except ValueError as exc:
            self.dropped("oversized", f"frames from node {sender}: {exc}")
            return
        index = 0
        while index < len(frames):
            frame = frames[index]
            index += 1
            try:
                message = protocol.decode(frame)
            except ValueError as exc:
                self.dropped("malformed", f"a malformed message from node {sender}: {exc}")
                continue
            data = None
            if type(message) is protocol.ObjectChunk:  # its bytes follow, whether it is valid or not
                data = frames[index] if index < len(frames) else b""
                index += 1
            problem = message_schema.problem(message)
            if problem is not None:
                self.dropped("invalid", f"an invalid message from node {sender}: {problem}")
                continue
            if data is not None:
                self._on_object_chunk(node_id, message, data)
                continue
            handler = self._peer_handlers.get(type(message))
            if handler is None:
                self.dropped("unexpected", f"a {type(message).__name__} from node {sender}")
                continue
            info = self.cluster.nodes.get(node_id) if node_id is not None else None
            if node_id is not None and (info is None or not info.alive) and type(message) not in _INTRODUCTIONS:
                self.dropped("unknown_node", f"a {type(message).__name__} from unknown or dead node {sender}")
                continue
            try:
                handler(node_id, message)
            except Exception:
                self.survived(f"handling {type(message).__name__} from node {sender}")

    # -- membership (head) ----------------------------------------------------------------

    def _on_register_node(self, node_id: bytes, message: protocol.RegisterNode) -> None:
        if not self.is_head:
            logger.warning("a node tried to register with a node that is not the head")
            return
        now = time.monotonic()
        self.cluster.upsert(
            NodeInfo(
                message.node_id,
                message.endpoint,
                message.node_ip,
                dict(to_shape(message.resources)),
                dict(to_shape(message.resources)),
                True,
                False,
                message.object_store_bytes,
                last_seen=now,
                started_at=time.time(),
                data_endpoint=message.data_endpoint,
            )
        )
        self._tables_changed()
        logger.info("node %s joined from %s", message.node_id.hex(), message.endpoint)
        self._broadcast_table()

    def _on_heartbeat(self, node_id: bytes, message: protocol.NodeHeartbeat) -> None:
        info = self.cluster.nodes.get(message.node_id)
        if info is None or not info.alive:
            return
        info.total = dict(message.total)
        info.available = dict(message.available)
        info.object_store_used_bytes = message.object_store_used_bytes
        info.num_workers = message.num_workers
        info.extra["counts"] = message.counts or {}
        info.last_seen = time.monotonic()

    def _broadcast_table(self) -> None:
        self.cluster.upsert(self._self_info())
        rows = [info.row() for info in self.cluster.nodes.values()]
        for info in self.cluster.peers():
            self._send_peer(info.node_id, protocol.NodeTable(rows))

    def _cluster_housekeeping(self, now: float) -> None:
        self._transfer_housekeeping(now)
        if self.state_queries:
            self._expire_state_queries(now)
        if self.is_head:
            for info in self.cluster.peers():
                if now - info.last_seen > self.config.node_timeout_s:
                    logger.warning(
                        "node %s missed heartbeats for %.1f s: declaring it dead",
                        info.node_id.hex(),
                        now - info.last_seen,
                    )
                    self._node_died(info.node_id)
            if len(self.cluster.nodes) > 1:
                self._broadcast_table()
            return
        if now - self.last_table_at > self.config.node_timeout_s:
            logger.error("no word from the head for %.1f s: it is gone; stopping this node", now - self.last_table_at)
            self.running = False
            return
        head_id = self.cluster_head_id()
        assert head_id is not None  # known since _join_cluster, and node rows are never removed
        self._send_peer(
            head_id,
            protocol.NodeHeartbeat(
                self.node_id,
                dict(self.scheduler.total),
                dict(self.scheduler.available),
                self.store.used_bytes,
                len(self.worker_pids),
                self.local_counts(),
            ),
        )

    # -- state API across nodes -----------------------------------------------------------

    def gather_state(self, client_id: bytes, message: protocol.StateQuery, rows: list) -> None:
        """Ask every other node for its rows; answer the client when all have (or in 2 s)."""
        self._state_query_ids += 1
        peers = [info.node_id for info in self.cluster.peers()]
        self.state_queries[self._state_query_ids] = {
            "client": client_id,
            "request": message.request_id,
            "kind": message.kind,
            "rows": list(rows),
            "waiting": set(peers),
            "deadline": time.monotonic() + 2.0,
        }
        for node in peers:
            self._send_peer(node, protocol.StateQuery(self._state_query_ids, message.kind))

    def _on_peer_state_query(self, node_id: bytes, message: protocol.StateQuery) -> None:
        from . import state_view

        builder = state_view.BUILDERS.get(message.kind)
        self._send_peer(node_id, protocol.StateReply(message.request_id, builder(self) if builder is not None else []))

    def _on_peer_state_reply(self, node_id: bytes, message: protocol.StateReply) -> None:
        query = self.state_queries.get(message.request_id)
        if query is None:
            return
        query["rows"].extend(message.rows)
        query["waiting"].discard(node_id)
        if not query["waiting"]:
            self._answer_state_query(message.request_id)

    def _answer_state_query(self, query_id: int) -> None:
        from . import state_view

        query = self.state_queries.pop(query_id)
        if query["client"] in self.clients:
            rows = state_view.merge_rows(query["kind"], query["rows"])
            self._send(query["client"], protocol.StateReply(query["request"], rows))

    def _expire_state_queries(self, now: float) -> None:
        for query_id, query in list(self.state_queries.items()):
            if now >= query["deadline"] or not any(self.cluster.is_alive(n) for n in query["waiting"]):
                self._answer_state_query(query_id)

    def cluster_head_id(self) -> bytes | None:
        for info in self.cluster.nodes.values():
            if info.is_head:
                return info.node_id
        return None

    # -- membership (every node) ----------------------------------------------------------

    def _on_node_table(self, node_id, message: protocol.NodeTable) -> None:
        self.last_table_at = time.monotonic()
        seen = set()
        for row in message.nodes:
            info = NodeInfo.from_row(row)
            seen.add(info.node_id)
            known = self.cluster.nodes.get(info.node_id)
            if info.node_id == self.node_id:
                info = self._self_info()
            elif known is not None and not known.alive:
                continue
            elif not info.alive:
                if known is not None:
                    self._node_died(info.node_id)  # marks it dead and cleans up after it
                else:
                    self.cluster.upsert(info)  # died before we heard of it: listed only
                continue
            self.cluster.upsert(info)
        for node in [n.node_id for n in self.cluster.alive() if n.node_id not in seen]:
            self._node_died(node)
        self._tables_changed()

    def _say_goodbye(self) -> None:
        """Stopping on purpose: the head forgets this node now; a stopping head stops the rest."""
        for info in self.cluster.peers():
            if self.is_head or info.is_head:
                self._send_peer(info.node_id, protocol.Disconnect("node stopping"))

    def _on_peer_leaving(self, node_id: bytes, message: protocol.Disconnect) -> None:
        info = self.cluster.nodes.get(node_id)
        if info is not None and info.is_head and not self.is_head:
            logger.info("the head is stopping; stopping this node")
            self.running = False
            return
        logger.info("node %s is leaving the cluster", node_id.hex())
        self._node_died(node_id)

    def _tables_changed(self) -> None:
        self.tag_nodes = {info.node_id[:NODE_TAG_BYTES]: info.node_id for info in self.cluster.nodes.values()}
        self.objects.on_new_entry = self._on_new_entry if len(self.cluster.nodes) > 1 else None

    def _node_died(self, node_id: bytes) -> None:
        if not self.cluster.mark_dead(node_id):
            return
        logger.warning("node %s is dead", node_id.hex())
        socket = self.peer_sockets.pop(node_id, None)
        if socket is not None and socket is not self.head_socket:
            socket.close(linger=0)
        self.peer_outbox.pop(node_id, None)
        self.peer_functions.pop(node_id, None)
        self._apply_frees(self.objects.client_gone(node_id))
        self.actors.node_died(node_id)  # first: calls in flight there follow their actor
        for record in list(self.tasks.values()):
            if record.state == "DONE":
                continue
            if record.origin == node_id:
                # Its owner is gone: nobody wants the result.
                if record.state in ("WAITING", "QUEUED"):
                    self._drop_task(record)
            elif record.node == node_id:
                self._forwarded_task_lost(record, node_id)
        self._objects_lost_with(node_id)
        self._groups_lost_with(node_id)
        if self.is_head:
            self._broadcast_table()

    def _forwarded_task_lost(self, record, node_id: bytes) -> None:
        if record.spec.actor_id is not None:
            self.actor_call_lost(record, node_id)
            return
        record.node = None
        if record.cancelled:
            self._finish_with_error(record, "cancelled", None)
        elif record.retries_left != 0:
            record.retries_left -= 1 if record.retries_left > 0 else 0
            self._requeue(record)
        else:
            self._finish_with_error(
                record,
                "node_died",
                {
                    "message": f"Task {record.spec.function_name} was running on node {node_id.hex()}, which died, "
                    "and it has no retries left (max_retries)."
                },
            )

    # -- placement ------------------------------------------------------------------------

    def _placement_target(self, record):
        """LOCAL, a peer's node id, or False when no live node could run the task."""
        spec = record.spec
        if record.origin is not None or record.local_only or len(self.cluster.nodes) < 2:
            return LOCAL
        shape = to_shape(spec.resources)
        locality = self._argument_bytes(spec)
        return self.cluster.choose(shape, spec.strategy, fits(self.scheduler.available, shape), locality)

    def _argument_bytes(self, spec) -> dict | None:
        by_node: dict = {}
        for object_id in spec.arg_refs:
            entry = self.objects.get(object_id)
            if entry is None or entry.value is None or entry.value.data is not None:
                continue
            node = self.remote_objects.get(object_id, self.node_id)
            by_node[node] = by_node.get(node, 0) + entry.value.shm_size
        if not by_node or max(by_node.values()) < LOCALITY_MIN_BYTES:
            return None
        return by_node

    def _forward(self, record, node_id: bytes) -> None:
        spec = record.spec
        record.state = "RUNNING"
        record.node = node_id
        record.worker_id = None
        record.started_at = time.monotonic()
        record.started_wall = time.time()
        sent = self.peer_functions.setdefault(node_id, set())
        functions = {}
        if spec.function_id and spec.function_id not in sent:
            sent.add(spec.function_id)
            functions[spec.function_id] = self.functions.get(spec.function_id, b"")
        self.cluster.take(node_id, to_shape(spec.resources))
        self._send_peer(node_id, protocol.ForwardTasks([spec], functions))

    def _spill_queued(self) -> None:
        """Send queued work this node cannot start now to peers that have room."""
        for shape in list(self.scheduler.queues):
            if fits(self.scheduler.available, shape) and self.scheduler.is_feasible(shape):
                continue
            while True:
                target = self.cluster.spill_target(shape)
                if target is None:
                    break
                task_id = self.scheduler.take_spillable(shape, lambda tid: self._spillable(self.tasks.get(tid)))
                if task_id is None:
                    break
                self._forward(self.tasks[task_id], target)

    def _spillable(self, record) -> bool:
        if record is None or record.origin is not None or record.spec.actor_id is not None:
            return False
        strategy = record.spec.strategy
        return not (strategy and (strategy[0] == "SPREAD" or (strategy[0] == "NODE_AFFINITY" and not strategy[2])))

    # -- forwarded tasks (the node running them) ------------------------------------------

    def _on_forward_tasks(self, node_id: bytes, message: protocol.ForwardTasks) -> None:
        self.functions.update(message.functions)
        self._accept_tasks(message.specs, origin=node_id)

    def _return_to_origin(self, record, returns: list) -> None:
        """Send a guest task's results to its owner; keep arena values here for it."""
        origin = record.origin
        if not self.cluster.is_alive(origin):
            return
        wire = []
        kept = {}
        for value in returns:
            if value.data is None or value.contained:
                # Arena values stay here for the owner; values holding refs stay until the
                # owner has borrowed those refs (it releases them when it frees the value).
                kept[value.object_id] = 1
            if value.data is None:
                value = ObjectValue(value.object_id, None, -1, value.shm_size, value.is_error, value.contained)
            wire.append(value)
        if kept:
            self._suppress_borrow = True
            try:
                self.objects.add_refs(origin, kept)
            finally:
                self._suppress_borrow = False
        self._send_peer(origin, protocol.ForwardedDone([protocol.TaskResult(record.spec.task_id, wire)]))
        # A value we had borrowed (a rebuilt argument of a task here) is now kept here for its
        # owner: drop the borrow, or each side would keep the other's copy alive forever.
        unborrow = {object_id: -1 for object_id in kept if object_id in self.borrowed}
        if unborrow:
            self.borrowed.difference_update(unborrow)
            self._send_peer(origin, protocol.UpdateBorrows(unborrow))

    # -- forwarded tasks (the owner) ------------------------------------------------------

    def _on_forwarded_done(self, node_id: bytes, message: protocol.ForwardedDone) -> None:
        for result in message.results:
            record = self.tasks.get(result.task_id)
            remote_ids = [v.object_id for v in result.returns if v.data is None]
            kept_ids = [v.object_id for v in result.returns if v.data is None or v.contained]
            if record is None or record.state == "DONE" or record.node != node_id:
                if kept_ids:
                    self._send_peer(node_id, protocol.ReleaseObjects(kept_ids))
                continue
            self.cluster.give_back(node_id, to_shape(record.spec.resources))
            for object_id in remote_ids:
                self.remote_objects[object_id] = node_id
            for object_id in kept_ids:
                self.held_remotely[object_id] = node_id
            kept = self.lineage.get(result.task_id)
            if kept is not None:
                kept[1].update(remote_ids)  # a rebuild: the lineage holds the arguments already
            elif remote_ids:
                # Keep what is needed to rebuild these values if that node dies.
                self.lineage[result.task_id] = [record.spec, set(remote_ids)]
                record.keep_args = True
            self._finish_with_values(record, result.returns)

    # -- borrowing and locations ----------------------------------------------------------

    def owner_node(self, object_id: bytes) -> bytes | None:
        """The node owning an object made on another node; None for this node's own."""
        tag = owner_tag(object_id)
        if tag == self.tag:
            return None
        return self.tag_nodes.get(tag)

    def _on_new_entry(self, object_id: bytes) -> None:
        if self._suppress_borrow:
            return
        owner = self.owner_node(object_id)
        if owner is None or not self.cluster.is_alive(owner):
            return
        self.borrowed.add(object_id)
        self._send_peer(owner, protocol.UpdateBorrows({object_id: 1}))

    def _objects_freed(self, freed_ids: list) -> None:
        for object_id in freed_ids:
            self.watching.discard(object_id)
            self.remote_objects.pop(object_id, None)
            holder = self.held_remotely.pop(object_id, None)
            if holder is not None and self.cluster.is_alive(holder):
                self._send_peer(holder, protocol.ReleaseObjects([object_id]))
            if object_id in self.borrowed:
                self.borrowed.discard(object_id)
                owner = self.owner_node(object_id)
                if owner is not None and self.cluster.is_alive(owner):
                    self._send_peer(owner, protocol.UpdateBorrows({object_id: -1}))
            task_id = object_id[:-4]
            kept = self.lineage.get(task_id)
            if kept is not None:
                kept[1].discard(object_id)
                if not kept[1]:
                    del self.lineage[task_id]
                    spec = kept[0]
                    self._apply_frees(self.objects.unhold(list(spec.arg_refs) + list(spec.contained or ())))

    def _on_update_borrows(self, node_id: bytes, message: protocol.UpdateBorrows) -> None:
        self._apply_ref_deltas(node_id, message.deltas)

    def _on_release_objects(self, node_id: bytes, message: protocol.ReleaseObjects) -> None:
        self._apply_frees(self.objects.remove_refs(node_id, {object_id: 1 for object_id in message.object_ids}))

    def _watch_foreign(self, object_ids) -> None:
        """Ask owners on other nodes to say where these (not yet ready here) objects are."""
        if len(self.cluster.nodes) < 2:
            return
        by_owner: dict = {}
        for object_id in object_ids:
            if object_id in self.watching:
                continue
            owner = self.owner_node(object_id)
            if owner is None:
                continue
            entry = self.objects.get(object_id)
            if entry is not None and entry.ready:
                continue
            self.watching.add(object_id)
            if not self.cluster.is_alive(owner):
                self._owner_lost(object_id, owner)
                continue
            by_owner.setdefault(owner, []).append(object_id)
        for owner, ids in by_owner.items():
            self._send_peer(owner, protocol.WatchObjects(ids))

    def _owner_lost(self, object_id: bytes, owner: bytes) -> None:
        error = self.make_error_value(
            "object_lost",
            None,
            {
                "object_id": object_id.hex(),
                "reason": "owner_died",
                "owner": f"node {owner.hex()}",
            },
        )
        self.watching.discard(object_id)
        self._publish(ObjectValue(object_id, error.data, -1, 0, True, []), None)

    def _on_watch_objects(self, node_id: bytes, message: protocol.WatchObjects) -> None:
        values, locations = [], []
        for object_id in message.object_ids:
            entry = self.objects.get(object_id)
            if entry is None:
                error = self.make_error_value(
                    "object_lost",
                    None,
                    {
                        "object_id": object_id.hex(),
                        "reason": "freed",
                        "owner": f"node {self.node_id.hex()}",
                    },
                )
                values.append(ObjectValue(object_id, error.data, -1, 0, True, []))
                locations.append(b"")
            elif entry.ready:
                value, location = self._location_of(entry)
                values.append(value)
                locations.append(location)
            else:
                self.objects.subscribe(node_id, object_id)
        if values:
            self._send_peer(node_id, protocol.ObjectLocations(values, locations))

    def _location_of(self, entry) -> tuple:
        value = entry.value
        if value.data is not None:
            return value, b""
        location = self.remote_objects.get(entry.object_id, self.node_id)
        return ObjectValue(value.object_id, None, -1, value.shm_size, value.is_error, value.contained), location

    def _send_location(self, node_id: bytes, entry) -> None:
        value, location = self._location_of(entry)
        self._send_peer(node_id, protocol.ObjectLocations([value], [location]))

    def _on_object_locations(self, node_id: bytes, message: protocol.ObjectLocations) -> None:
        for value, location in zip(message.values, message.locations):
            self.watching.discard(value.object_id)
            entry = self.objects.get(value.object_id)
            if entry is None or entry.ready:
                continue
            if location and location != self.node_id:
                self.remote_objects[value.object_id] = bytes(location)
            self._publish(value, None)
