"""Sending tasks to workers: their ref arguments resolved, their function shipped once per worker.

A mixin of NodeManagerService. A task whose argument failed ends with that error instead of
running; the others are marked RUNNING and go to the worker in one ExecuteTasks message.
"""

from __future__ import annotations

import time

from . import protocol
from .node_host import NodeHost
from .protocol import ObjectValue, TaskSpec
from .task_record import RUNNING, TaskRecord


class TaskDispatch(NodeHost):
    def _dispatch(self, worker_id: bytes, task_ids: list) -> None:
        slot = self.scheduler.workers.get(worker_id)
        execs = []
        functions: dict = {}
        now = time.monotonic()
        for task_id in task_ids:
            record = self.tasks[task_id]
            spec = record.spec
            values, failed = self._arg_values(worker_id, spec)
            if failed is not None:
                self.scheduler.task_finished(worker_id, task_id, 0.0, now)
                self._finish_with_values(record, [failed] * spec.num_returns, copy_from_error=True)
                continue
            self._start_record(record, worker_id, now)
            execs.append(protocol.TaskExec(spec, values, slot.gpu_ids if slot else []))
            self._add_function(worker_id, spec, functions)
        if execs:
            self._send(worker_id, protocol.ExecuteTasks(execs, functions))

    def _send_to_worker(self, worker_id: bytes, spec: TaskSpec, record: TaskRecord | None = None) -> None:
        """Send one actor call (or an actor's constructor) with its arguments resolved."""
        values, failed = self._arg_values(worker_id, spec, fail_fast=record is not None)
        if failed is not None:
            assert record is not None  # only calls with a record fail fast
            self._finish_with_values(record, [failed] * spec.num_returns, copy_from_error=True)
            return
        if record is not None:
            self._start_record(record, worker_id, time.monotonic())
        functions: dict = {}
        self._add_function(worker_id, spec, functions)
        slot = self.scheduler.workers.get(worker_id)
        self._send(
            worker_id, protocol.ExecuteTasks([protocol.TaskExec(spec, values, slot.gpu_ids if slot else [])], functions)
        )

    def _arg_values(self, worker_id: bytes, spec: TaskSpec, fail_fast: bool = True) -> tuple[list, ObjectValue | None]:
        """The values of a task's ref arguments for `worker_id`, or the first failed one.

        With `fail_fast` a failed argument fails the task without running it (what was already
        delivered for it is released); without, failed values are sent along (an actor's
        constructor raises them, so the actor dies with that cause).
        """
        values = []
        for object_id in spec.arg_refs:
            entry = self.objects.get(object_id)
            assert entry is not None and entry.value is not None  # a task runs once its arguments are ready
            if entry.value.is_error and fail_fast:
                self._release_delivered(worker_id, values)
                return [], entry.value
            values.append(self._deliverable(worker_id, entry))
        return values, None

    def _add_function(self, worker_id: bytes, spec: TaskSpec, functions: dict) -> None:
        """Ship the task's function (or class) with it the first time this worker needs it."""
        client = self.clients.get(worker_id)
        if client is not None and spec.function_id and spec.function_id not in client.functions_seen:
            client.functions_seen.add(spec.function_id)
            functions[spec.function_id] = self.functions.get(spec.function_id, b"")

    def _start_record(self, record: TaskRecord, worker_id: bytes, now: float) -> None:
        record.state = RUNNING
        record.worker_id = worker_id
        record.started_at = now
        record.started_wall = time.time()
