"""How a task ends: workers' results in, return values published, the task's record released.

A mixin of NodeManagerService. Each finished or failed task is counted and summarized for the
state API (finished_tasks); a retriable failure is queued again while retries are left.
"""

from __future__ import annotations

import time

from . import protocol, state_view
from .node_host import NodeHost
from .protocol import ObjectValue
from .system_errors import error_value
from .task_record import DONE, QUEUED, TaskRecord


class TaskCompletion(NodeHost):
    def _on_tasks_done(self, client_id: bytes, message: protocol.TasksDone) -> None:
        now = time.monotonic()
        for result in message.results:
            actor_id = self.actors.creation_tasks.get(result.task_id)
            if actor_id is not None:
                self.actors.creation_done(actor_id, result)
                continue
            self.scheduler.task_finished(client_id, result.task_id, result.duration_s, now)
            record = self.tasks.get(result.task_id)
            if record is None or record.state == DONE:
                self._discard_values(client_id, result.returns)
                continue
            if result.retriable_error and record.retries_left != 0 and not record.cancelled:
                record.retries_left -= 1 if record.retries_left > 0 else 0
                self._discard_values(client_id, result.returns)
                self._requeue(record)
                continue
            self._finish_with_values(record, result.returns)

    def _discard_values(self, client_id: bytes, values: list) -> None:
        """Results nobody wants: the client's unsealed blocks go back, off its list (its exit must not free them)."""
        self.store.abort(client_id, [v.shm_offset for v in values if v.data is None and v.shm_offset >= 0])

    def _finish_with_values(
        self, record: TaskRecord, values: list, copy_from_error: bool = False, error_type: str | None = None
    ) -> None:
        spec = record.spec
        failed = bool(values) and values[0].is_error
        if failed and error_type is None and record.cancelled:
            # It failed after ray.cancel reached it (TaskCancelledError raised in it, a cancelled
            # child's error, or its node's own cancel): Ray's state API lists it as cancelled.
            error_type = "TASK_CANCELLED"
        if failed and error_type == "TASK_CANCELLED":
            self.cancelled_count += 1
        elif failed:
            self.failed_count += 1
        else:
            self.finished_count += 1
        self.finished_tasks.append(
            state_view.task_summary(
                record,
                "FAILED" if failed else "FINISHED",
                (error_type or "TASK_EXECUTION_EXCEPTION") if failed else None,
                time.time(),
            )
        )
        record.state = DONE
        if spec.actor_id is not None:
            self.actors.task_done(record)
        owner = spec.owner_id
        returns = []
        for index, value in enumerate(values):
            object_id = spec.task_id + (index + 1).to_bytes(4, "big")
            if copy_from_error or value.object_id != object_id:
                value = ObjectValue(
                    object_id, value.data, value.shm_offset, value.shm_size, value.is_error, value.contained
                )
            self.store.sealed(value)
            returns.append(value)
        if record.origin is not None:
            self._return_to_origin(record, returns)
            self._suppress_borrow = True
        try:
            for value in returns:
                self._publish(value, owner)
        finally:
            self._suppress_borrow = False
        self._release_task(record)

    def _finish_with_error(self, record: TaskRecord, kind: str, details: dict | None) -> None:
        spec = record.spec
        value = error_value(kind, spec, details)
        error_type = {"cancelled": "TASK_CANCELLED", "worker_crashed": "WORKER_DIED"}.get(kind, kind.upper())
        self._finish_with_values(record, [value] * spec.num_returns, copy_from_error=True, error_type=error_type)

    def _release_task(self, record: TaskRecord) -> None:
        spec = record.spec
        self.tasks.pop(spec.task_id, None)
        self.objects.forget_task(spec.task_id)
        if not record.keep_args:
            self._apply_frees(self.objects.unhold(list(spec.arg_refs) + list(spec.contained or ())))

    def _drop_task(self, record: TaskRecord) -> None:
        if record.state == QUEUED:
            self.scheduler.cancel_queued(record.spec.task_id)
        record.state = DONE
        self._release_task(record)
