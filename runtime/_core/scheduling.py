"""Pure local scheduling state: resource accounting, ready queues, worker slots, pipelining.

Events come in as method calls (a task became ready, a worker registered, finished, blocked or
died) and `schedule(now)` returns the actions to take (dispatch tasks to a worker, start
workers). No sockets, no threads, no wall clock: `now` is an argument.

Resources are kept in integer milli-units so fractional requests (num_cpus=0.5) add and
subtract exactly. A worker runs tasks of one resource shape at a time; while its grant is held
it may be given several short tasks at once (pipelining) so that the per-task round trip to
the node manager is amortised.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

UNIT = 1000

Shape = tuple  # sorted tuple of (resource name, milli-units)


def to_shape(resources: dict) -> Shape:
    return tuple(sorted((name, int(round(amount * UNIT))) for name, amount in resources.items() if amount))


def shape_to_dict(shape: Shape) -> dict:
    return {name: amount / UNIT for name, amount in shape}


def fits(available: dict, shape: Shape) -> bool:
    return all(available.get(name, 0) >= amount for name, amount in shape)


def acquire(available: dict, shape: Shape) -> None:
    for name, amount in shape:
        available[name] = available.get(name, 0) - amount


def release(available: dict, shape: Shape) -> None:
    for name, amount in shape:
        available[name] = available.get(name, 0) + amount


@dataclass
class WorkerSlot:
    worker_id: bytes
    grant: Shape | None = None  # resources held for the tasks queued on this worker
    assigned: deque = field(default_factory=deque)  # task ids sent, not yet finished
    blocked: bool = False
    idle_since: float = 0.0
    dedicated: bool = False  # reserved (actors); never given pool tasks
    gpu_ids: list = field(default_factory=list)
    gpu_share: int = 0  # milli-GPUs taken from each id in gpu_ids


@dataclass
class QueuedTask:
    task_id: bytes
    shape: Shape
    function_id: bytes


class SchedulerState:
    """Local scheduler of one node."""

    def __init__(self, total: dict, *, max_workers: int, pipeline_depth: int, fast_task_threshold_s: float):
        self.total = {name: int(round(amount * UNIT)) for name, amount in total.items()}
        self.available = dict(self.total)
        self.max_workers = max_workers
        self.pipeline_depth = pipeline_depth
        self.fast_task_threshold_s = fast_task_threshold_s
        self.workers: dict[bytes, WorkerSlot] = {}
        self.starting = 0
        self.queues: dict[Shape, deque] = {}
        self.tasks: dict[bytes, QueuedTask] = {}  # queued or assigned
        self.task_worker: dict[bytes, bytes] = {}
        self.mean_duration_s: dict[bytes, float] = {}
        self.gpu_free = {index: UNIT for index in range(int(total.get("GPU", 0)))}

    # -- events ---------------------------------------------------------------------------

    def worker_starting(self, count: int = 1) -> None:
        self.starting += count

    def worker_start_failed(self, count: int = 1) -> None:
        self.starting = max(0, self.starting - count)

    def add_worker(self, worker_id: bytes, now: float) -> None:
        self.starting = max(0, self.starting - 1)
        self.workers[worker_id] = WorkerSlot(worker_id, idle_since=now)

    # -- dedicated workers (actors) --------------------------------------------------------

    def reserve(self, resources: dict) -> tuple[Shape, list, int] | None:
        """Take resources for an actor; returns (shape, gpu ids, gpu share) or None."""
        shape = to_shape(resources)
        if not fits(self.available, shape) or not self._gpus_fit(shape):
            return None
        acquire(self.available, shape)
        holder = WorkerSlot(b"")
        self._assign_gpus(holder, shape)
        return shape, holder.gpu_ids, holder.gpu_share

    def cancel_reservation(self, reservation: tuple[Shape, list, int]) -> None:
        shape, gpu_ids, share = reservation
        release(self.available, shape)
        self._release_gpus(WorkerSlot(b"", gpu_ids=list(gpu_ids), gpu_share=share))

    def add_dedicated_worker(self, worker_id: bytes, reservation: tuple[Shape, list, int], now: float) -> None:
        shape, gpu_ids, share = reservation
        self.workers[worker_id] = WorkerSlot(
            worker_id, grant=shape, dedicated=True, idle_since=now, gpu_ids=list(gpu_ids), gpu_share=share
        )

    def resize_grant(self, worker_id: bytes, resources: dict) -> None:
        """An actor placed with one shape holds another while it runs (Ray: 1 CPU, then 0)."""
        slot = self.workers.get(worker_id)
        if slot is None:
            return
        shape = to_shape(resources)
        if slot.grant is not None:
            release(self.available, slot.grant)
        acquire(self.available, shape)
        slot.grant = shape

    def remove_worker(self, worker_id: bytes) -> list[bytes]:
        """Forget a dead worker; returns the ids of tasks it had been given."""
        slot = self.workers.pop(worker_id, None)
        if slot is None:
            return []
        if slot.grant is not None and not slot.blocked:
            release(self.available, slot.grant)
        self._release_gpus(slot)
        lost = list(slot.assigned)
        for task_id in lost:
            self.tasks.pop(task_id, None)
            self.task_worker.pop(task_id, None)
        return lost

    def worker_died(self, worker_id: bytes) -> tuple[list[bytes], list[bytes]]:
        """Forget a dead worker; returns (tasks it may have started, tasks put back in the queue).

        A pool worker runs the tasks it was given one at a time, in the order they were sent,
        and reports them in that order: of those still assigned, only the first can have
        started. The rest go back to the front of their queue, in order, as if never sent. A
        dedicated (actor) worker's tasks all count as lost; its actor decides what happens to them.
        """
        slot = self.workers.get(worker_id)
        if slot is None or slot.dedicated:
            return self.remove_worker(worker_id), []
        never_started = list(slot.assigned)[1:]
        self.requeue_front(worker_id, never_started)
        return self.remove_worker(worker_id), never_started

    def may_have_started(self, task_id: bytes) -> bool:
        """Whether a task sent to a worker can have begun there (see worker_died).

        On a pool worker only the first of the tasks it has not reported can have; those behind
        it have not. Unknown tasks and a dedicated (actor) worker's tasks count as begun.
        """
        worker_id = self.task_worker.get(task_id)
        slot = self.workers.get(worker_id) if worker_id is not None else None
        if slot is None or slot.dedicated or not slot.assigned:
            return True
        return slot.assigned[0] == task_id

    def is_feasible(self, shape: Shape) -> bool:
        return fits(self.total, shape)

    def enqueue(self, task_id: bytes, resources: dict, function_id: bytes, front: bool = False) -> None:
        shape = to_shape(resources)
        task = QueuedTask(task_id, shape, function_id)
        self.tasks[task_id] = task
        queue = self.queues.setdefault(shape, deque())
        if front:
            queue.appendleft(task_id)
        else:
            queue.append(task_id)

    def requeue_front(self, worker_id: bytes, task_ids: list[bytes]) -> None:
        """A blocked worker handed back tasks it had not started."""
        slot = self.workers.get(worker_id)
        for task_id in reversed(task_ids):
            task = self.tasks.get(task_id)
            if task is None:
                continue
            if slot is not None:
                try:
                    slot.assigned.remove(task_id)
                except ValueError:
                    pass
            self.task_worker.pop(task_id, None)
            self.queues.setdefault(task.shape, deque()).appendleft(task_id)

    def cancel_queued(self, task_id: bytes) -> bool:
        """Drop a task that has not been dispatched; False if it is not queued here."""
        task = self.tasks.get(task_id)
        if task is None or task_id in self.task_worker:
            return False
        queue = self.queues.get(task.shape)
        if queue is not None:
            try:
                queue.remove(task_id)
            except ValueError:
                return False
        del self.tasks[task_id]
        return True

    def take_spillable(self, shape: Shape, allowed, scan: int = 64) -> bytes | None:
        """Remove and return a queued task of `shape` that `allowed(task_id)` lets run elsewhere.

        Taken from the back of the queue (the front is what this node runs next); at most
        `scan` tasks are looked at.
        """
        queue = self.queues.get(shape)
        if not queue:
            return None
        for index in range(len(queue) - 1, max(-1, len(queue) - 1 - scan), -1):
            task_id = queue[index]
            if allowed(task_id):
                del queue[index]
                if not queue:
                    del self.queues[shape]
                del self.tasks[task_id]
                return task_id
        return None

    def worker_of(self, task_id: bytes) -> bytes | None:
        return self.task_worker.get(task_id)

    def task_finished(self, worker_id: bytes, task_id: bytes, duration_s: float, now: float) -> None:
        task = self.tasks.pop(task_id, None)
        self.task_worker.pop(task_id, None)
        if task is not None:
            previous = self.mean_duration_s.get(task.function_id)
            self.mean_duration_s[task.function_id] = (
                duration_s if previous is None else 0.8 * previous + 0.2 * duration_s
            )
        slot = self.workers.get(worker_id)
        if slot is None:
            return
        try:
            slot.assigned.remove(task_id)
        except ValueError:
            pass
        if not slot.assigned and not slot.dedicated:
            if slot.grant is not None and not slot.blocked:
                release(self.available, slot.grant)
            self._release_gpus(slot)
            slot.grant = None
            slot.blocked = False
            slot.idle_since = now

    def worker_blocked(self, worker_id: bytes, blocked: bool) -> None:
        """A worker waiting in get() lends its resources back so nested work can run."""
        slot = self.workers.get(worker_id)
        if slot is None or slot.blocked == blocked or slot.grant is None:
            if slot is not None and slot.grant is None:
                slot.blocked = False
            return
        slot.blocked = blocked
        if blocked:
            release(self.available, slot.grant)
        else:
            acquire(self.available, slot.grant)  # may go negative briefly, as in Ray

    # -- decisions --------------------------------------------------------------------------

    def _batch_size(self, function_id: bytes, queued: int, workers: int) -> int:
        mean = self.mean_duration_s.get(function_id)
        if mean is None or mean > self.fast_task_threshold_s:
            return 1
        return max(1, min(self.pipeline_depth, math.ceil(queued / max(1, workers))))

    def schedule(self, now: float) -> tuple[list[tuple[bytes, list[bytes]]], int]:
        """Returns (dispatches as (worker id, task ids), number of workers to start)."""
        dispatches: dict[bytes, list[bytes]] = {}
        idle = [s for s in self.workers.values() if s.grant is None and not s.assigned and not s.dedicated]
        want_workers = 0
        for shape, queue in list(self.queues.items()):
            while queue:
                head = self.tasks[queue[0]]
                if idle and fits(self.available, shape) and self._gpus_fit(shape):
                    slot = idle.pop()
                    acquire(self.available, shape)
                    slot.grant = shape
                    self._assign_gpus(slot, shape)
                    count = self._batch_size(head.function_id, len(queue), len(self.workers))
                    self._assign(slot, queue, count, dispatches)
                    continue
                # Pipeline short tasks onto busy workers that already hold this shape.
                if self._batch_size(head.function_id, len(queue), len(self.workers)) > 1:
                    fed = False
                    for slot in self.workers.values():
                        if slot.grant == shape and not slot.blocked and len(slot.assigned) < self.pipeline_depth:
                            room = self.pipeline_depth - len(slot.assigned)
                            self._assign(slot, queue, min(room, len(queue)), dispatches)
                            fed = True
                            if not queue:
                                break
                    if fed:
                        continue
                if not idle and fits(self.available, shape) and self._gpus_fit(shape):
                    want_workers += 1
                break
            if not queue:
                del self.queues[shape]
        capacity = self.max_workers - len(self.workers) - self.starting
        to_start = max(0, min(want_workers - self.starting, capacity))
        return list(dispatches.items()), to_start

    def _gpus_fit(self, shape: Shape) -> bool:
        """GPUs are granted per device: a request fits only if single devices have room."""
        wanted = dict(shape).get("GPU", 0)
        if not wanted or not self.gpu_free:
            return True
        if wanted >= UNIT:
            return sum(1 for free in self.gpu_free.values() if free == UNIT) >= wanted // UNIT
        return any(free >= wanted for free in self.gpu_free.values())

    def _assign_gpus(self, slot: WorkerSlot, shape: Shape) -> None:
        wanted = dict(shape).get("GPU", 0)
        if not wanted or not self.gpu_free:
            return
        if wanted >= UNIT:
            ids = [i for i, free in sorted(self.gpu_free.items()) if free == UNIT][: wanted // UNIT]
            share = UNIT
        else:
            ids = [i for i, free in sorted(self.gpu_free.items()) if free >= wanted][:1]
            share = wanted
        for index in ids:
            self.gpu_free[index] -= share
        slot.gpu_ids, slot.gpu_share = ids, share

    def _release_gpus(self, slot: WorkerSlot) -> None:
        for index in slot.gpu_ids:
            self.gpu_free[index] = self.gpu_free.get(index, 0) + slot.gpu_share
        slot.gpu_ids, slot.gpu_share = [], 0

    def _assign(self, slot: WorkerSlot, queue: deque, count: int, dispatches: dict) -> None:
        batch = dispatches.setdefault(slot.worker_id, [])
        for _ in range(count):
            if not queue:
                break
            task_id = queue.popleft()
            slot.assigned.append(task_id)
            self.task_worker[task_id] = slot.worker_id
            batch.append(task_id)

    def idle_workers_to_stop(self, now: float, timeout_s: float, keep: int) -> list[bytes]:
        idle = sorted(
            (s for s in self.workers.values() if s.grant is None and not s.assigned and not s.dedicated),
            key=lambda s: s.idle_since,
        )
        surplus = len([s for s in self.workers.values() if not s.dedicated]) - keep
        victims = []
        for slot in idle:
            if surplus <= 0:
                break
            if now - slot.idle_since >= timeout_s:
                victims.append(slot.worker_id)
                surplus -= 1
        return victims

    def queued_count(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def available_dict(self) -> dict:
        return {name: amount / UNIT for name, amount in self.available.items()}

    def total_dict(self) -> dict:
        return {name: amount / UNIT for name, amount in self.total.items()}
