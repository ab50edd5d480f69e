"""The node manager service: one process per node that wires pure state to ZeroMQ.

    drivers / workers (DEALER) ──ipc──> ROUTER ── NodeManagerService ── template (pipes)
                                                   │  SchedulerState    forks workers,
                                                   │  ObjectDirectory   reports exits
                                                   │  ArenaStore (shared memory + spill)
                                                   └─ ControlStore (nodes, jobs, kv)

It owns the node's shared-memory arena, the worker pool and the task table. It forwards user
payloads as opaque bytes and never unpickles them; it only pickles shoal's own error objects.
Every record is checked against message_schema before a handler sees it, and no step of a loop
turn can end the loop: what is dropped or raised is counted and logged rate-limited (fault_log).
Messages to each client are batched per loop turn into one multipart send.
"""

# NodeManagerService joins the mixins' implementations with NodeHost's declarations of them
# (node_host.py): these checks keep the two in step.
# pyright: reportIncompatibleMethodOverride=true, reportIncompatibleVariableOverride=true

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field

import zmq

from . import config, lifecycle, port_guard, protocol, state_view, tcp_frames
from .actor_manager import ActorManager
from .arena_store import ArenaStore
from .cluster_actors import ClusterActors
from .cluster_peers import PEER_SUFFIX, ClusterPeers
from .control_store import ControlStore
from .fault_log import FaultLog
from .group_placement import GroupPlacement
from .message_intake import MessageIntake
from .object_directory import ObjectDirectory
from .object_handlers import ObjectHandlers
from .object_transfer import ObjectTransfer
from .placement_groups import PlacementGroupTable
from .protocol import ObjectValue, TaskSpec
from .scheduling import SchedulerState
from .system_errors import error_value
from .task_cancel import TaskCancel
from .task_completion import TaskCompletion
from .task_dispatch import TaskDispatch
from .task_record import QUEUED, WAITING, TaskRecord
from .worker_pool import WorkerPool
from .worker_watch import WorkerWatch

logger = logging.getLogger(__name__)


@dataclass
class ClientRecord:
    client_id: bytes
    kind: str
    pid: int
    functions_seen: set = field(default_factory=set)
    started_at: float = 0.0
    remote: bool = False  # connected over TCP: no access to this node's shared memory
    last_seen: float = 0.0  # remote clients: when we last heard from it


class NodeManagerService(
    MessageIntake,
    ObjectHandlers,
    ClusterPeers,
    ObjectTransfer,
    ClusterActors,
    GroupPlacement,
    WorkerPool,
    TaskDispatch,
    TaskCompletion,
    TaskCancel,
):
    def __init__(self, options: dict, template, template_options: dict):
        self.options = options
        self.template = template
        self.template_options = template_options
        self.config = config.load_config()
        self.session_dir = options["session_dir"]
        self.owns_session_dir = options.get("owns_session_dir", True)
        self.node_id = bytes.fromhex(options["node_id"])
        self.node_ip = options.get("node_ip", "127.0.0.1")
        self.resources = dict(options["resources"])
        self.parent_pid = options.get("parent_pid")
        self.endpoint = f"ipc://{lifecycle.node_socket_path(self.session_dir)}"
        self.scheduler = SchedulerState(
            self.resources,
            max_workers=self.config.max_workers,
            pipeline_depth=self.config.pipeline_depth,
            fast_task_threshold_s=self.config.fast_task_threshold_s,
        )
        self.objects = ObjectDirectory()
        self.control = ControlStore()
        self.tasks: dict[bytes, TaskRecord] = {}
        self.functions: dict[bytes, bytes] = {}
        self.clients: dict[bytes, ClientRecord] = {}
        self.worker_pids: dict[bytes, int] = {}  # worker id -> pid (from the template)
        self.pid_workers: dict[int, bytes] = {}
        self.worker_exits: dict[bytes, int] = {}
        self.worker_watch = WorkerWatch()  # sees deaths the template does not report
        self.pool_forks: set[bytes] = set()  # pool workers asked of the template, not yet started
        self.outbox: dict[bytes, list] = {}
        self.target_pool = int(self.resources.get("CPU", 1)) if self.config.prestart_workers else 0
        self.store = ArenaStore(int(options["object_store_bytes"]), os.path.join(self.session_dir, "spill"))
        self.running = True
        self.faults = FaultLog(logger)  # what was dropped or survived: logged rate-limited, counted
        self.socket_handlers: dict = {}  # extra sockets the loop polls -> what drains them
        self.dump_requested = False
        from .serialization import serialize

        self._true_value = serialize(True).to_bytes()
        self.actors = ActorManager(self)
        self.snapshot_sequence = 0
        self.finished_count = 0
        self.failed_count = 0
        self.cancelled_count = 0  # cancelled tasks, which Ray's state API lists as FAILED (TASK_CANCELLED)
        self.placement_groups = PlacementGroupTable(self.scheduler)
        self.finished_tasks: deque = deque(maxlen=self.config.task_history)  # for the state API
        self.exited_worker_pids: dict = {}
        self.parked: list = []  # allocations waiting for pins to be handed back
        self.parked_deliveries: list = []  # spilled objects waiting for room to be restored
        self.revoking: set = set()
        self.pins_kept: set = set()  # asked back, but readers keep them for now
        self.started_at = time.time()
        self._init_cluster()
        self._init_transfers()
        self._init_cluster_actors()
        self._init_group_placement()
        self._handlers = {
            protocol.RegisterClient: self._on_register,
            protocol.SubmitTasks: self._on_submit,
            protocol.ExportFunction: self._on_export,
            protocol.PutObjects: self._on_put,
            protocol.AllocateObject: self._on_allocate,
            protocol.GetObjects: self._on_get,
            protocol.UpdateReferences: self._on_update_references,
            protocol.RevokePinsReply: self._on_revoke_pins_reply,
            protocol.TasksDone: self._on_tasks_done,
            protocol.WorkerBlocked: self._on_worker_blocked,
            protocol.CancelTask: self._on_cancel,
            protocol.CancelledTaskStarted: self._on_cancelled_task_started,
            protocol.PublishLogs: self._on_logs,
            protocol.ClusterInfoRequest: self._on_cluster_info,
            protocol.Disconnect: self._on_disconnect,
            protocol.Keepalive: lambda client_id, message: None,  # heard: last_seen is updated
            protocol.CreateActor: lambda client_id, message: self.actors.create(client_id, message),
            protocol.GetActor: lambda client_id, message: self.actors.get(client_id, message),
            protocol.KillActor: lambda client_id, message: self._kill_actor(message),
            protocol.ActorExited: lambda client_id, message: self.actors.exited(message.actor_id, message.reason),
            protocol.ListActors: self._on_list_actors,
            protocol.StateQuery: self._on_state_query,
            protocol.CreatePlacementGroup: self._on_create_placement_group,
            protocol.RemovePlacementGroup: self._on_remove_placement_group,
        }

    # -- start and stop ---------------------------------------------------------------------

    def start(self) -> None:
        self.context = zmq.Context(io_threads=1)
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.router.setsockopt(zmq.RCVHWM, 0)
        self.router.setsockopt(zmq.SNDHWM, 0)
        self.router.bind(self.endpoint)
        self.events = self.context.socket(zmq.PUB)
        self.events.setsockopt(zmq.LINGER, 0)
        self.events.setsockopt(zmq.SNDHWM, 16)
        self.events.bind(f"ipc://{lifecycle.node_socket_path(self.session_dir, 'events')}")
        self.tcp_router = None
        self.data_router = None
        self.data_endpoint = ""
        self.authenticator = None
        self.remote_senders: set = set()
        if self.options.get("tcp_port") is not None or not self.is_head:
            self._bind_tcp(self.options.get("bind_host") or "127.0.0.1", int(self.options.get("tcp_port") or 0))
        self.signal_read, self.signal_write = socket.socketpair()
        self.signal_read.setblocking(False)
        self.signal_write.setblocking(False)
        signal.set_wakeup_fd(self.signal_write.fileno())
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGUSR2, self._on_dump_signal)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.cluster.upsert(self._self_info())
        self._tables_changed()
        if not self.is_head:
            self._join_cluster(self.config.node_timeout_s)
        self._template_buffer = b""
        if self.target_pool:
            self._start_workers(self.target_pool)

    def _bind_tcp(self, host: str, port: int) -> None:
        """The cluster's TCP port: CURVE-encrypted, and only clients holding the token get in."""
        from . import auth

        token = self.options["token"]
        self.authenticator = auth.TokenAuthenticator(self.context, token)
        self.tcp_router = self.context.socket(zmq.ROUTER)
        self.tcp_router.setsockopt(zmq.LINGER, 0)
        self.tcp_router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.tcp_router.setsockopt(zmq.RCVHWM, 0)
        self.tcp_router.setsockopt(zmq.SNDHWM, 0)
        port_guard.configure(self.tcp_router, self.config)  # small frames and a handshake deadline
        auth.secure_server(self.tcp_router, token)
        if port:
            self.tcp_router.bind(f"tcp://{host}:{port}")
            self.tcp_endpoint = f"tcp://{host}:{port}"
        else:
            port = self.tcp_router.bind_to_random_port(f"tcp://{host}")
            self.tcp_endpoint = f"tcp://{host}:{port}"
        self.port_guard = port_guard.PortGuard(self.tcp_router, port, self.config, self.faults)
        self.socket_handlers[self.port_guard.monitor] = lambda monitor: self.port_guard.drain(time.monotonic())
        self._bind_data_port(host, token)

    def _on_signal(self, signum, frame) -> None:
        self.running = False

    def _on_dump_signal(self, signum, frame) -> None:
        self.dump_requested = True

    def dump_state(self) -> None:
        """Write the task table, queues and workers to the log (kill -USR2 <pid>)."""
        state_view.dump(self, logger)

    def local_counts(self) -> dict:
        return state_view.local_counts(self)

    def _publish_snapshot(self) -> None:
        """The event stream: one small aggregate per tick, whatever the task rate."""
        self.snapshot_sequence += 1
        try:
            self.events.send(protocol.encode(state_view.snapshot(self)), zmq.NOBLOCK)
        except zmq.Again:
            pass

    def _on_cluster_info(self, client_id: bytes, message: protocol.ClusterInfoRequest) -> None:
        self._send(client_id, state_view.cluster_info(self, message.request_id))

    def close(self, failure: str | None = None) -> None:
        """Stop; after a `failure` the logs are kept (lifecycle.keep_logs) and drivers are told where."""
        reason = "node manager stopped"
        if failure is not None:
            kept = lifecycle.keep_logs(self.session_dir)
            reason = f"the node manager failed: {failure}; its logs are in {kept}"
        for client_id, record in list(self.clients.items()):
            if record.kind == "driver":
                self._send(client_id, protocol.ShuttingDown(reason))
        self._say_goodbye()
        self._flush()
        for pid in list(self.pid_workers):
            lifecycle.kill_quietly(pid)
        self.template.close(self.config.shutdown_timeout_s)
        self.worker_watch.close()
        self._flush_peers()
        self._close_peers()
        self.router.close(linger=0)
        self.events.close(linger=0)
        if self.tcp_router is not None:
            self.port_guard.close()
            self.tcp_router.close(linger=0)
            assert self.authenticator is not None  # _bind_tcp starts it with the TCP router
            self.authenticator.stop()
        self._close_data_sockets()
        self.context.term()
        self.store.close()
        if self.owns_session_dir:
            lifecycle.remove_session_dir(self.session_dir)

    # -- loop -------------------------------------------------------------------------------

    def run(self) -> None:
        poller = self.poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.template.read_fd, zmq.POLLIN)
        poller.register(self.signal_read.fileno(), zmq.POLLIN)
        if self.tcp_router is not None:
            poller.register(self.tcp_router, zmq.POLLIN)
        for watched in self.socket_handlers:
            poller.register(watched, zmq.POLLIN)
        next_housekeeping = 0.0
        guarded = self._guarded  # no step of a turn may end the loop, whatever a message held
        while self.running:
            events = dict(poller.poll(100))
            if self.router in events:
                guarded(self._drain_router)
            if self.tcp_router is not None and self.tcp_router in events:
                guarded(self._drain_router, self.tcp_router)
            if self.socket_handlers:
                for watched, handler in list(self.socket_handlers.items()):
                    if watched in events:
                        guarded(handler, watched)
            if self.template.read_fd in events:
                guarded(self._read_template)
            if self.signal_read.fileno() in events:
                try:
                    self.signal_read.recv(4096)
                except BlockingIOError:
                    pass
            guarded(self._schedule)
            guarded(self._flush)
            if self.dump_requested:
                self.dump_requested = False
                guarded(self.dump_state)
            now = time.monotonic()
            if now >= next_housekeeping:
                next_housekeeping = now + self.config.parent_check_interval_s
                guarded(self._housekeeping, now)

    def _drain_router(self, router=None) -> None:
        router = router or self.router
        remote = router is not self.router
        for _ in range(1000):
            try:
                frames: list = router.recv_multipart(zmq.NOBLOCK, copy=not remote)  # zmq Frames when remote
            except zmq.Again:
                return
            if remote:
                self.port_guard.proven(frames[0].get(zmq.SRCFD))
                frames = [frame.bytes for frame in frames]
            client_id = frames[0][:16]  # a client's send socket adds one byte to its id
            if client_id in self.exited_worker_pids:
                continue  # a dead worker's last words, overtaken by its exit: they would undo its cleanup
            if remote:
                if frames[0][16:] == PEER_SUFFIX:
                    self._on_peer_frames(client_id, frames[1:])
                    continue
                try:
                    frames[1:] = tcp_frames.join(frames[1:], self.config.max_message_bytes)
                except ValueError as exc:
                    self.dropped("oversized", f"frames from client {client_id.hex()}: {exc}")
                    continue
                self.remote_senders.add(client_id)
                client = self.clients.get(client_id)
                if client is not None:
                    client.last_seen = time.monotonic()
            for frame in frames[1:]:
                message = self.checked_message(frame, client_id)
                if message is None:
                    continue
                handler = self._handlers.get(type(message))
                if handler is None:
                    self.dropped("unexpected", f"a {type(message).__name__} from client {client_id.hex()}")
                    continue
                try:
                    handler(client_id, message)
                except Exception:
                    self.survived(f"handling {type(message).__name__} from client {client_id.hex()}")

    def _send(self, client_id: bytes, message) -> None:
        self.outbox.setdefault(client_id, []).append(message)

    def _flush(self) -> None:
        if self.peer_outbox:
            self._flush_peers()
        if not self.outbox:
            return
        outbox, self.outbox = self.outbox, {}
        for client_id, messages in outbox.items():
            if client_id not in self.clients:
                continue
            frames = [client_id]
            ready: list = []
            for message in messages:
                # Coalesce object deliveries into one message per turn.
                if type(message) is protocol.ObjectsReady:
                    ready.extend(message.values)
                else:
                    frames.append(protocol.encode(message))
            if ready:
                frames.append(protocol.encode(protocol.ObjectsReady(ready)))
            router = self.tcp_router if self.clients[client_id].remote else self.router
            assert router is not None  # remote clients reach this node only through the TCP router
            try:
                router.send_multipart(frames, zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                logger.warning("could not send to %s: %s", client_id.hex(), exc)

    def _housekeeping(self, now: float) -> None:
        self._publish_snapshot()
        self.faults.flush(now)
        if self.tcp_router is not None:
            self._cluster_housekeeping(now)
        if self.pull_backlog or self.relocate_later:
            self._retry_pull_backlog()
        if self.group_retry:
            self._groups_housekeeping()
        if self.parent_pid and not lifecycle.pid_alive(self.parent_pid):
            logger.info("parent %s exited; stopping", self.parent_pid)
            self.running = False
            return
        for client_id, record in list(self.clients.items()):
            if record.kind != "driver":
                continue
            if record.remote:
                if now - record.last_seen > self.config.node_timeout_s:
                    logger.warning("driver %s (pid %s over TCP) went silent: dropping it", client_id.hex(), record.pid)
                    self._client_gone(client_id)
                else:
                    self._send(client_id, protocol.Keepalive())
            elif not lifecycle.pid_alive(record.pid):
                self._client_gone(client_id)
        if self.parked or self.parked_deliveries:
            self._retry_parked(now)
        for worker_id in self.scheduler.idle_workers_to_stop(now, self.config.worker_idle_timeout_s, self.target_pool):
            pid = self.worker_pids.get(worker_id)
            if pid:
                self._kill_worker(pid)
        for worker_id in self.worker_watch.unreported_exits(now):
            pid = self.worker_pids.get(worker_id)
            if pid:
                self._on_worker_exit(pid, None, cause="it exited and its worker template did not report it")

    # -- clients ----------------------------------------------------------------------------

    def _on_register(self, client_id: bytes, message: protocol.RegisterClient) -> None:
        remote = client_id in self.remote_senders
        if remote and message.kind != "driver":
            self.dropped("refused", f"a {message.kind} registering over TCP: only drivers may connect remotely")
            return
        self.clients[client_id] = ClientRecord(
            client_id, message.kind, message.pid, started_at=time.time(), remote=remote, last_seen=time.monotonic()
        )
        self._send(
            client_id,
            protocol.RegisterClientReply(
                self.node_id,
                self.session_dir,
                list(self.store.arena.describe()),
                self.resources,
                self.node_ip,
                os.getpid(),
                self.config.max_message_bytes,
            ),
        )
        if message.kind == "worker":
            if not self.actors.worker_registered(client_id):
                self.scheduler.add_worker(client_id, time.monotonic())
        else:
            self.control.add_job(client_id.hex(), message.pid, message.namespace)

    def _on_disconnect(self, client_id: bytes, message: protocol.Disconnect) -> None:
        self._client_gone(client_id)

    def _client_gone(self, client_id: bytes) -> None:
        record = self.clients.pop(client_id, None)
        if record is not None and record.kind == "driver":
            self.control.finish_job(client_id.hex())
            self.actors.owner_gone(client_id)
            for group in list(self.placement_groups.groups.values()):
                if group.owner_id == client_id and group.lifetime != "detached":
                    self._remove_placement_group(group.placement_group_id)
            # Tasks a departed driver owns are no longer wanted.
            for task in list(self.tasks.values()):
                if task.spec.owner_id == client_id and task.state in (WAITING, QUEUED):
                    self._drop_task(task)
        self.store.abort_allocations_of(client_id)
        self._apply_frees(self.objects.client_gone(client_id))
        self.outbox.pop(client_id, None)

    # -- tasks ------------------------------------------------------------------------------

    def _on_export(self, client_id: bytes, message: protocol.ExportFunction) -> None:
        self.functions[message.function_id] = message.payload

    def _on_submit(self, client_id: bytes, message: protocol.SubmitTasks) -> None:
        self._accept_tasks(message.specs, origin=None)

    def new_task_record(self, spec: TaskSpec, origin: bytes | None = None) -> TaskRecord:
        return TaskRecord(spec, spec.max_retries, submitted_at=time.monotonic(), origin=origin)

    def _accept_tasks(self, specs: list, origin: bytes | None) -> None:
        for spec in specs:
            record = self.new_task_record(spec, origin)
            self.tasks[spec.task_id] = record
            if spec.parent_task_id:
                parent = self.tasks.get(spec.parent_task_id)
                if parent is not None:
                    parent.children.append(spec.task_id)
            held = list(spec.arg_refs) + list(spec.contained or ())
            self.objects.hold(held)
            problem = self._placement_problem(spec.strategy)
            if problem is not None:
                self._finish_with_error(record, "unschedulable", {"message": problem})
                continue
            if spec.actor_id is not None and len(self.cluster.nodes) > 1 and self.route_actor_call(record):
                continue
            self._queue_here(record)

    def _queue_here(self, record: TaskRecord) -> None:
        """Queue a task (or an actor call of an actor hosted here) until its arguments are ready."""
        spec = record.spec
        if spec.actor_id is not None and not self.actors.submit(record):
            return
        if self.objects.wait_for_args(spec.task_id, spec.arg_refs):
            self._make_ready(record)
        elif len(self.cluster.nodes) > 1:
            self._watch_foreign(spec.arg_refs)

    def _placement_problem(self, strategy) -> str | None:
        """Why a scheduling strategy cannot be met on this cluster, or None."""
        if not strategy or strategy[0] != "NODE_AFFINITY":
            return None
        node_hex, soft = strategy[1], strategy[2]
        if soft or self.cluster.is_alive(bytes.fromhex(node_hex)):
            return None
        alive = ", ".join(sorted(n.node_id.hex() for n in self.cluster.alive()))
        return (
            f"NodeAffinitySchedulingStrategy(soft=False) names node {node_hex}, which is not alive "
            f"in this cluster (nodes: {alive}); pass soft=True to run elsewhere"
        )

    def _make_ready(self, record: TaskRecord) -> None:
        if record.spec.actor_id is None and not record.local_only and len(self.cluster.nodes) > 1:
            target = self._placement_target(record)
            if isinstance(target, bytes):  # a peer's node id; not LOCAL (None) or False
                self._forward(record, target)
                return
            record.local_only = True
        if self.remote_objects and self._fetch_args(record):
            return  # stays WAITING until its arguments arrive from other nodes
        record.state = QUEUED
        if record.spec.actor_id is not None:
            self.actors.pump(record.spec.actor_id)
        else:
            self.scheduler.enqueue(record.spec.task_id, record.spec.resources, record.spec.function_id)

    def _requeue(self, record: TaskRecord) -> None:
        spec = record.spec
        record.spec = dataclasses.replace(spec, attempt=spec.attempt + 1)
        record.worker_id = None
        if spec.actor_id is not None:
            record.state = QUEUED
            self.actors.requeue_front(record)
            self.actors.pump(spec.actor_id)
        else:
            self._make_ready(record)

    def _schedule(self) -> None:
        if self.placement_groups.pending:
            self._place_groups()
        if self.actors.pending:
            self.actors.place_pending()
        dispatches, to_start = self.scheduler.schedule(time.monotonic())
        for worker_id, task_ids in dispatches:
            self._dispatch(worker_id, task_ids)
        if to_start:
            self._start_workers(to_start)
        if self.scheduler.queues and len(self.cluster.nodes) > 1:
            self._spill_queued()

    def make_error_value(self, kind: str, spec: TaskSpec | None, details: dict | None) -> ObjectValue:
        return error_value(kind, spec, details)

    def _on_state_query(self, client_id: bytes, message: protocol.StateQuery) -> None:
        builder = state_view.BUILDERS.get(message.kind)
        rows = builder(self) if builder is not None else []
        if message.kind != "nodes" and self.cluster.peers():
            self.gather_state(client_id, message, rows)  # every node's rows, merged
            return
        self._send(client_id, protocol.StateReply(message.request_id, rows))

    def _on_list_actors(self, client_id: bytes, message: protocol.ListActors) -> None:
        self._send(client_id, protocol.ListActorsReply(message.request_id, self.actors.listing(message.namespace)))

    def _on_logs(self, client_id: bytes, message: protocol.PublishLogs) -> None:
        by_owner: dict[bytes, list] = {}
        by_node: dict[bytes, list] = {}
        for entry in message.records:
            if entry.owner_id in self.clients:
                by_owner.setdefault(entry.owner_id, []).append(entry)
            else:
                # A guest task's output goes to the node that owns the task.
                task = self.tasks.get(entry.task_id) if entry.task_id else None
                if task is not None and task.origin is not None:
                    by_node.setdefault(task.origin, []).append(entry)
        for owner, records in by_owner.items():
            self._send(owner, protocol.PublishLogs(records))
        for node, records in by_node.items():
            self._send_peer(node, protocol.PublishLogs(records))


def main(options: dict, template, template_options: dict) -> None:
    if options.get("parent_pid"):
        lifecycle.die_with_parent(signal.SIGTERM, expected_parent=options["parent_pid"])
    lifecycle.set_process_title("shoal::node")
    logging.basicConfig(
        filename=os.path.join(options["session_dir"], "logs", "node_manager.log"),
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    service = NodeManagerService(options, template, template_options)
    try:
        service.start()
    except Exception as exc:
        logger.exception("node manager failed to start")
        sys.stdout.write(f"FAILED {type(exc).__name__}: {exc}\n")
        sys.stdout.flush()
        raise SystemExit(1) from None
    tcp = f" {service.tcp_endpoint}" if service.tcp_router is not None else ""
    sys.stdout.write(f"READY {service.endpoint}{tcp}\n")
    sys.stdout.flush()
    failure = None
    try:
        service.run()
    except BaseException as exc:
        failure = f"{type(exc).__name__}: {exc}"
        logger.exception("the node manager's loop failed; stopping (its logs are kept)")
        raise
    finally:
        service.close(failure)
