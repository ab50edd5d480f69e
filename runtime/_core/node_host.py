"""What the node manager's mixins use of NodeManagerService, for the type checker only.

NodeManagerService is assembled from mixins (object_handlers, cluster_peers, object_transfer,
cluster_actors, group_placement, worker_pool, task_dispatch, task_completion, task_cancel) that
use the service's state and each other's methods. Each mixin derives from `NodeHost`, which
declares that shared surface; at run time `NodeHost` is `object`, so the mixins stay plain
classes and nothing here runs. Declarations follow the attribute's owner (set in
NodeManagerService or a mixin's `_init_*`) and the method's real signature. node_manager.py
turns on pyright's override checks, so a declaration here that no longer matches its
implementation is an error there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections import deque
    from typing import Protocol

    import zmq

    from . import protocol
    from .actor_manager import ActorManager
    from .arena_store import ArenaStore
    from .cluster_table import ClusterTable
    from .config import RuntimeConfig
    from .fault_log import FaultLog
    from .node_manager import ClientRecord
    from .object_directory import FreeActions, ObjectDirectory
    from .placement_groups import PlacementGroupTable
    from .protocol import ObjectValue, TaskSpec
    from .scheduling import SchedulerState
    from .task_record import TaskRecord
    from .template import TemplateHandle
    from .worker_watch import WorkerWatch

    class NodeHost(Protocol):
        # -- NodeManagerService's state -----------------------------------------------------
        options: dict
        template: TemplateHandle
        template_options: dict
        config: RuntimeConfig
        session_dir: str
        node_id: bytes
        node_ip: str
        started_at: float
        running: bool
        faults: FaultLog
        scheduler: SchedulerState
        objects: ObjectDirectory
        store: ArenaStore
        actors: ActorManager
        placement_groups: PlacementGroupTable
        tasks: dict[bytes, TaskRecord]
        functions: dict[bytes, bytes]
        clients: dict[bytes, ClientRecord]
        worker_pids: dict[bytes, int]
        pid_workers: dict[int, bytes]
        worker_watch: WorkerWatch
        pool_forks: set[bytes]
        exited_worker_pids: dict
        _template_buffer: bytes
        finished_count: int
        failed_count: int
        cancelled_count: int
        finished_tasks: deque
        revoking: set
        socket_handlers: dict
        _true_value: bytes
        context: zmq.Context[zmq.Socket]
        poller: zmq.Poller
        tcp_router: zmq.Socket | None
        tcp_endpoint: str
        data_endpoint: str

        # -- ClusterPeers' state ------------------------------------------------------------
        cluster: ClusterTable
        is_head: bool
        _peer_handlers: dict
        peer_functions: dict[bytes, set]
        remote_objects: dict[bytes, bytes]
        held_remotely: dict[bytes, bytes]
        lineage: dict[bytes, list]
        watching: set
        pins_kept: set
        _suppress_borrow: bool

        # -- NodeManagerService's methods ---------------------------------------------------
        def _send(self, client_id: bytes, message) -> None: ...
        def new_task_record(self, spec: TaskSpec, origin: bytes | None = None) -> TaskRecord: ...
        def _accept_tasks(self, specs: list, origin: bytes | None) -> None: ...
        def _queue_here(self, record: TaskRecord) -> None: ...
        def _make_ready(self, record: TaskRecord) -> None: ...
        def _requeue(self, record: TaskRecord) -> None: ...
        def _client_gone(self, client_id: bytes) -> None: ...
        def _on_logs(self, client_id: bytes, message: protocol.PublishLogs) -> None: ...
        def make_error_value(self, kind: str, spec: TaskSpec | None, details: dict | None) -> ObjectValue: ...
        def local_counts(self) -> dict: ...

        # -- ObjectHandlers' methods --------------------------------------------------------
        def _deliverable(
            self, client_id: bytes, entry, park: bool = False, deadline: float | None = None
        ) -> ObjectValue | None: ...
        def _publish(self, value: ObjectValue, owner: bytes | None) -> None: ...
        def _revoke_for(self, size_bytes: int) -> bool: ...
        def _apply_ref_deltas(self, holder: bytes, deltas: dict) -> None: ...
        def _apply_frees(self, actions: FreeActions) -> None: ...
        def _release_delivered(self, client_id: bytes, values: list) -> None: ...

        # -- MessageIntake's methods ------------------------------------------------------
        def dropped(self, reason: str, text: str) -> None: ...
        def survived(self, text: str) -> None: ...
        def checked_message(self, frame: bytes, sender: bytes, what: str = "client"): ...

        # -- ClusterPeers' methods ----------------------------------------------------------
        def _send_peer(self, node_id: bytes, message, data=None) -> None: ...
        def cluster_head_id(self) -> bytes | None: ...
        def _forward(self, record, node_id: bytes) -> None: ...
        def owner_node(self, object_id: bytes) -> bytes | None: ...
        def _objects_freed(self, freed_ids: list) -> None: ...
        def _watch_foreign(self, object_ids) -> None: ...
        def _send_location(self, node_id: bytes, entry) -> None: ...
        def _return_to_origin(self, record, returns: list) -> None: ...

        # -- ObjectTransfer's methods -------------------------------------------------------
        def _fetch(self, object_id: bytes, waiter: tuple) -> None: ...
        def _on_object_chunk(self, node_id, message: protocol.ObjectChunk, data) -> None: ...
        def _on_pull_chunk(self, node_id: bytes, message: protocol.PullChunk) -> None: ...
        def _objects_lost_with(self, node_id: bytes) -> None: ...
        def _transfer_housekeeping(self, now: float) -> None: ...

        # -- ClusterActors' and GroupPlacement's methods ------------------------------------
        def actor_call_lost(self, record, node_id: bytes) -> None: ...
        def _groups_lost_with(self, node_id: bytes) -> None: ...

        # -- WorkerPool's, TaskCompletion's and TaskCancel's methods ------------------------
        def _kill_worker(self, pid: int) -> None: ...
        def _finish_with_values(
            self, record: TaskRecord, values: list, copy_from_error: bool = False, error_type: str | None = None
        ) -> None: ...
        def _finish_with_error(self, record: TaskRecord, kind: str, details: dict | None) -> None: ...
        def _drop_task(self, record: TaskRecord) -> None: ...
        def _cancel(self, task_id: bytes, force: bool, recursive: bool) -> None: ...

else:
    NodeHost = object
