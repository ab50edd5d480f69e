"""Cancelling tasks (ray.cancel): queued, running, forwarded to another node, and their children.

A mixin of NodeManagerService. A task not started yet ends at once; a running one is asked to
stop (CancelRunning), or with force its worker is killed; a task running on another node is
cancelled there.
"""

from __future__ import annotations

from . import protocol
from .node_host import NodeHost
from .task_record import QUEUED, RUNNING, WAITING


class TaskCancel(NodeHost):
    def _on_cancel(self, client_id: bytes, message: protocol.CancelTask) -> None:
        self._cancel(message.task_id, message.force, message.recursive)

    def _cancel(self, task_id: bytes, force: bool, recursive: bool) -> None:
        record = self.tasks.get(task_id)
        if record is None:
            return
        if recursive:
            for child in list(record.children):
                self._cancel(child, force, recursive)
        record.cancelled = True
        if record.node is not None and record.state == RUNNING:
            self._send_peer(record.node, protocol.CancelTask(task_id, force, recursive))
            return
        if record.state == WAITING:
            self._finish_with_error(record, "cancelled", None)
        elif record.state == QUEUED:
            self.scheduler.cancel_queued(task_id)
            self._finish_with_error(record, "cancelled", None)
        elif record.state == RUNNING:
            assert record.worker_id is not None  # running here (not forwarded): started on a worker
            if force and self.scheduler.may_have_started(task_id):
                record.force_cancelled = True
                pid = self.worker_pids.get(record.worker_id)
                if pid:
                    self._kill_worker(pid)
            else:  # forced, a task pipelined behind the running one is dropped; that one and its worker go on
                self._send(record.worker_id, protocol.CancelRunning(task_id, force))
                if force:
                    self._finish_with_error(record, "cancelled", None)

    def _on_cancelled_task_started(self, client_id: bytes, message: protocol.CancelledTaskStarted) -> None:
        pid = self.worker_pids.get(client_id)
        if pid and self.scheduler.worker_of(message.task_id) == client_id:  # not reported yet: it runs there
            self._kill_worker(pid)
