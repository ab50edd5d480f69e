"""The node manager's actors: placement, the dedicated worker, ordered calls, restarts.

    CreateActor ──> PENDING ──(resources reserved, worker forked)──> STARTING
        STARTING ──(constructor returned)──> ALIVE ──(process died, restarts left)──> PENDING
        any ──(constructor failed / killed / exit_actor / no restarts left)──> DEAD

Method calls are queued per actor in arrival order (one caller's calls arrive in the order
it made them) and sent to the actor's worker as soon as their arguments are ready and the
head of the queue has been sent, so the worker runs them in order. Calls to a dead actor
fail at once with the actor's death error.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field

from . import protocol
from .protocol import ActorSpec, ObjectValue

logger = logging.getLogger(__name__)

PENDING, STARTING, ALIVE, DEAD = "PENDING_CREATION", "STARTING", "ALIVE", "DEAD"
HANDLE_SUFFIX = b"\xff\xff\xff\xfe"


def handle_token(actor_id: bytes) -> bytes:
    """The object id whose reference count is the number of live handles to an actor."""
    return actor_id + HANDLE_SUFFIX


@dataclass
class ActorRecord:
    spec: ActorSpec
    state: str = PENDING
    worker_id: bytes | None = None
    pid: int | None = None
    restarts_left: int = 0
    num_restarts: int = 0
    queue: deque = field(default_factory=deque)  # method task ids not yet sent
    inflight: dict = field(default_factory=dict)  # task id -> record, sent to the worker
    reservation: tuple | None = None
    death_value: ObjectValue | None = None
    no_restart: bool = False
    exit_reason: str | None = None
    node: bytes | None = None  # owned here, hosted on that node
    origin: bytes | None = None  # hosted here for the node that owns it
    watchers: set = field(default_factory=set)  # nodes to tell where it runs


class ActorManager:
    def __init__(self, service):
        self.service = service
        self.actors: dict[bytes, ActorRecord] = {}
        self.named: dict[tuple[str, str], bytes] = {}
        self.pending: deque = deque()  # actor ids waiting for resources
        self.forking: dict[bytes, bytes] = {}  # worker id -> actor id
        self.by_worker: dict[bytes, bytes] = {}
        self.creation_tasks: dict[bytes, bytes] = {}  # constructor task id -> actor id

    def creation_args_ready(self, task_id: bytes) -> bool:
        actor_id = self.creation_tasks.get(task_id)
        if actor_id is None:
            return False
        record = self.actors.get(actor_id)
        if record is not None and record.state == PENDING:
            self.pending.append(actor_id)
        return True

    # -- creation ---------------------------------------------------------------------------

    def create(self, client_id: bytes, message: protocol.CreateActor) -> None:
        spec = message.spec
        reply = message.request_id
        if spec.name:
            key = (spec.namespace, spec.name)
            existing = self.named.get(key)
            if existing is not None and self.actors[existing].state != DEAD:
                if message.get_if_exists:
                    self._reply(client_id, reply, existing, None)
                else:
                    self._reply(client_id, reply, None, "exists")
                return
            self.named[key] = spec.actor_id
            self.service.announce_name(spec, alive=True)
        self.admit(spec, spec.max_restarts, 0, None)
        if reply:
            self._reply(client_id, reply, spec.actor_id, None)

    def admit(self, spec: ActorSpec, restarts_left: int, num_restarts: int, origin: bytes | None) -> ActorRecord:
        """Take an actor in: owned here (origin None) or hosted here for another node."""
        record = ActorRecord(spec, restarts_left=restarts_left, num_restarts=num_restarts, origin=origin)
        self.actors[spec.actor_id] = record
        creation = spec.creation
        problem = self.service._placement_problem(creation.strategy)
        if problem is not None:
            record.state = DEAD
            record.death_value = self.service.make_error_value("unschedulable", creation, {"message": problem})
            self.service.actor_changed(record)
            return record
        self.creation_tasks[creation.task_id] = spec.actor_id
        held = list(creation.arg_refs) + list(creation.contained or ())
        self.service.objects.hold(held)
        if self.service.objects.wait_for_args(creation.task_id, creation.arg_refs):
            self.pending.append(spec.actor_id)
        else:
            self.service._watch_foreign(creation.arg_refs)
        return record

    def _reply(self, client_id: bytes, request_id: int, actor_id: bytes | None, error: str | None) -> None:
        if not request_id:
            return
        meta = self.actors[actor_id].spec.handle_meta if actor_id is not None else None
        self.service._send(client_id, protocol.ActorReply(request_id, actor_id, meta, error))

    def get(self, client_id: bytes, message: protocol.GetActor) -> None:
        actor_id = self.named.get((message.namespace, message.name))
        if actor_id is None or self.actors[actor_id].state == DEAD:
            if self.service.lookup_name_at_head(client_id, message):
                return
            self.service._send(client_id, protocol.ActorReply(message.request_id, None, None, "missing"))
        else:
            self._reply(client_id, message.request_id, actor_id, None)

    def place_pending(self) -> None:
        scheduler = self.service.scheduler
        waiting = deque()
        while self.pending:
            actor_id = self.pending.popleft()
            record = self.actors.get(actor_id)
            if record is None or record.state != PENDING:
                continue
            if self.service.place_actor_elsewhere(record):
                self._forward_queued(record)
                continue
            reservation = scheduler.reserve(record.spec.placement)
            if reservation is None:
                waiting.append(actor_id)
                continue
            record.reservation = reservation
            record.state = STARTING
            worker_id = os.urandom(16)
            self.forking[worker_id] = actor_id
            self.service.template.send(f"fork {worker_id.hex()}\n")
            self.service.actor_changed(record)
        self.pending = waiting

    def _forward_queued(self, record: ActorRecord) -> None:
        """Calls queued here follow the actor to the node it was sent to, in order."""
        tasks = self.service.tasks
        for task_id in record.queue:
            task = tasks.get(task_id)
            if task is not None and task.state != "DONE":
                self.service._forward(task, record.node)
        record.queue.clear()

    def worker_registered(self, worker_id: bytes) -> bool:
        """A freshly forked worker registered; True if it was forked for an actor."""
        actor_id = self.forking.pop(worker_id, None)
        if actor_id is None:
            return False
        record = self.actors.get(actor_id)
        if record is None or record.state != STARTING:
            pid = self.service.worker_pids.get(worker_id)
            if pid:
                self.service._kill_worker(pid)
            return True
        scheduler = self.service.scheduler
        scheduler.add_dedicated_worker(worker_id, record.reservation, time.monotonic())
        record.reservation = None
        record.worker_id = worker_id
        record.pid = self.service.worker_pids.get(worker_id)
        self.by_worker[worker_id] = actor_id
        creation = record.spec.creation
        creation = dataclasses.replace(
            creation, actor_creation=dict(creation.actor_creation or {}, restarted=record.num_restarts > 0)
        )
        self.service._send_to_worker(worker_id, creation)
        return True

    # -- method calls -----------------------------------------------------------------------

    def submit(self, task_record) -> bool:
        """Queue a method call; returns False if the actor is unknown or dead (call failed)."""
        actor_id = task_record.spec.actor_id
        record = self.actors.get(actor_id)
        if record is None or record.state == DEAD:
            value = record.death_value if record is not None else None
            if value is None:
                value = self.service.make_error_value(
                    "actor_died", task_record.spec, {"message": "The actor does not exist in this cluster."}
                )
            self.service._finish_with_values(
                task_record, [value] * task_record.spec.num_returns, copy_from_error=True, error_type="ACTOR_DIED"
            )
            return False
        record.queue.append(task_record.spec.task_id)
        return True

    def pump(self, actor_id: bytes) -> None:
        record = self.actors.get(actor_id)
        if record is None or record.state != ALIVE or record.node is not None:
            return
        tasks = self.service.tasks
        while record.queue:
            task = tasks.get(record.queue[0])
            if task is None:
                record.queue.popleft()
                continue
            if task.state != "QUEUED":
                break  # arguments not ready: later calls wait to keep the order
            record.queue.popleft()
            record.inflight[task.spec.task_id] = task
            self.service._send_to_worker(record.worker_id, task.spec, task)

    def task_done(self, task_record) -> None:
        record = self.actors.get(task_record.spec.actor_id)
        if record is not None:
            record.inflight.pop(task_record.spec.task_id, None)

    def requeue_front(self, task_record) -> None:
        record = self.actors.get(task_record.spec.actor_id)
        if record is None:
            return
        record.inflight.pop(task_record.spec.task_id, None)
        record.queue.appendleft(task_record.spec.task_id)

    def creation_done(self, actor_id: bytes, result: protocol.TaskResult) -> None:
        record = self.actors.get(actor_id)
        if record is None:
            return
        value = result.returns[0] if result.returns else None
        if value is not None and value.is_error:
            # The worker sent an ActorDiedError carrying the constructor's traceback.
            record.no_restart = True
            record.death_value = value
            self.kill(actor_id, no_restart=True)
            return
        record.state = ALIVE
        self.service.scheduler.resize_grant(record.worker_id, record.spec.lifetime)
        self.service.actor_changed(record)
        self.pump(actor_id)

    # -- death ------------------------------------------------------------------------------

    def kill(self, actor_id: bytes, no_restart: bool) -> None:
        record = self.actors.get(actor_id)
        if record is None or record.state == DEAD:
            return
        if no_restart:
            record.no_restart = True
            record.exit_reason = record.exit_reason or "it was killed with shoal.kill()."
        if record.node is not None:
            self.service.forward_kill(record, no_restart)
            if no_restart:
                self.mark_dead(record, None)
            return
        pid = self.service.worker_pids.get(record.worker_id) if record.worker_id else None
        if pid:
            self.service._kill_worker(pid)  # the exit decides between restart and death
        elif record.no_restart:
            if record.reservation is not None:
                self.service.scheduler.cancel_reservation(record.reservation)
                record.reservation = None
            self.mark_dead(record, None)

    def exited(self, actor_id: bytes, reason: str) -> None:
        record = self.actors.get(actor_id)
        if record is not None:
            record.no_restart = True
            record.exit_reason = reason

    def fork_lost(self, worker_id: bytes) -> None:
        """The template died before forking this actor's worker: the actor waits to be placed again."""
        actor_id = self.forking.pop(worker_id, None)
        record = self.actors.get(actor_id) if actor_id is not None else None
        if record is None or record.state != STARTING:
            return
        if record.reservation is not None:
            self.service.scheduler.cancel_reservation(record.reservation)
            record.reservation = None
        record.state = PENDING
        self.pending.append(actor_id)
        self.service.actor_changed(record)

    def worker_exited(self, worker_id: bytes, pid: int, code: int | None) -> bool:
        """Returns True if the worker hosted an actor."""
        actor_id = self.by_worker.pop(worker_id, None)
        if actor_id is None:
            actor_id = self.forking.pop(worker_id, None)
            if actor_id is None:
                return False
        record = self.actors.get(actor_id)
        if record is None or record.state == DEAD:
            return True
        record.worker_id = None
        if record.reservation is not None:
            self.service.scheduler.cancel_reservation(record.reservation)
            record.reservation = None
        if not record.no_restart and record.restarts_left != 0 and record.state in (ALIVE, STARTING):
            if record.restarts_left > 0:
                record.restarts_left -= 1
            record.num_restarts += 1
            self._fail_or_retry_inflight(record, pid, code)
            record.state = PENDING
            self.pending.append(actor_id)
            self.service.actor_changed(record)
            return True
        self.mark_dead(record, (pid, code))
        return True

    def _fail_or_retry_inflight(self, record: ActorRecord, pid: int, code: int | None) -> None:
        retry = []
        for task in list(record.inflight.values()):
            if task.state == "DONE":
                continue
            allowed = record.spec.max_task_retries
            if allowed == -1 or task.spec.attempt < allowed:
                retry.append(task)
            else:
                value = self.service.make_error_value(
                    "actor_unavailable", task.spec, {"message": self._death_message(record, pid, code, restarting=True)}
                )
                self.service._finish_with_values(
                    task, [value] * task.spec.num_returns, copy_from_error=True, error_type="ACTOR_UNAVAILABLE"
                )
        record.inflight.clear()
        for task in reversed(retry):
            task.spec = dataclasses.replace(task.spec, attempt=task.spec.attempt + 1)
            task.state = "QUEUED"
            record.queue.appendleft(task.spec.task_id)

    def _death_message(self, record: ActorRecord, pid, code, restarting: bool = False) -> str:
        from ..exceptions import format_worker_death

        name = f"{record.spec.class_name}" + (f" named {record.spec.name!r}" if record.spec.name else "")
        if record.exit_reason:
            return f"The actor {name} is dead: {record.exit_reason}"
        detail = format_worker_death(pid, exitcode=code) if pid is not None else "its process is gone"
        if restarting:
            return f"The actor {name} died while running this call and is restarting. {detail}"
        return f"The actor {name} is dead and will not restart. {detail}"

    def mark_dead(self, record: ActorRecord, exit_info) -> None:
        record.state = DEAD
        if record.death_value is None:
            pid, code = exit_info if exit_info else (None, None)
            spec = record.spec.creation
            record.death_value = self.service.make_error_value(
                "actor_died",
                spec,
                {"message": self._death_message(record, pid, code), "actor_id": record.spec.actor_id.hex()},
            )
        if record.worker_id is not None:
            self.by_worker.pop(record.worker_id, None)
        tasks = self.service.tasks
        doomed = list(record.inflight.values()) + [tasks[t] for t in record.queue if t in tasks]
        record.inflight.clear()
        record.queue.clear()
        for task in doomed:
            if task.state != "DONE":
                self.service._finish_with_values(
                    task, [record.death_value] * task.spec.num_returns, copy_from_error=True, error_type="ACTOR_DIED"
                )
        if record.spec.name and self.named.get((record.spec.namespace, record.spec.name)) == record.spec.actor_id:
            del self.named[(record.spec.namespace, record.spec.name)]
            self.service.announce_name(record.spec, alive=False)
        creation = record.spec.creation
        if self.creation_tasks.pop(creation.task_id, None) is not None:
            self.service.objects.forget_task(creation.task_id)
            self.service._apply_frees(
                self.service.objects.unhold(list(creation.arg_refs) + list(creation.contained or ()))
            )
        self.service.actor_changed(record)

    def node_died(self, node_id: bytes) -> None:
        """Actors we own that ran there restart elsewhere; actors we host for it stop."""
        for record in list(self.actors.values()):
            if record.state == DEAD:
                continue
            if record.node == node_id:
                record.node = None
                if not record.no_restart and record.restarts_left != 0:
                    if record.restarts_left > 0:
                        record.restarts_left -= 1
                    record.num_restarts += 1
                    record.state = PENDING
                    self.pending.append(record.spec.actor_id)
                else:
                    record.exit_reason = record.exit_reason or f"the node it ran on ({node_id.hex()}) died."
                    self.mark_dead(record, None)
            elif record.origin == node_id:
                record.exit_reason = "the node that owns it died."
                self.kill(record.spec.actor_id, no_restart=True)

    def handles_released(self, freed_ids) -> None:
        for object_id in freed_ids:
            if object_id.endswith(HANDLE_SUFFIX) and len(object_id) == 20:
                record = self.actors.get(object_id[:16])
                if record is not None and not record.spec.detached and record.state != DEAD:
                    record.exit_reason = "all handles to it went out of scope."
                    self.kill(record.spec.actor_id, no_restart=True)

    def owner_gone(self, client_id: bytes) -> None:
        for record in list(self.actors.values()):
            if record.spec.owner_id == client_id and not record.spec.detached and record.state != DEAD:
                record.exit_reason = "the driver or worker that created it exited."
                self.kill(record.spec.actor_id, no_restart=True)

    def listing(self, namespace: str | None) -> list:
        return [
            {
                "actor_id": record.spec.actor_id.hex(),
                "class_name": record.spec.class_name,
                "name": record.spec.name or "",
                "namespace": record.spec.namespace,
                "job_id": record.spec.creation.job_id.hex() if record.spec.creation.job_id is not None else None,
                "state": record.state,
                "pid": record.pid,
                "num_restarts": record.num_restarts,
                "detached": record.spec.detached,
                "node_id": (record.node or self.service.node_id).hex(),
            }
            for record in self.actors.values()
            if namespace is None or record.spec.namespace == namespace
        ]
