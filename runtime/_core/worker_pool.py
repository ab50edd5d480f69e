"""The node's worker pool: forking workers from the template, their exits, blocked workers.

A mixin of NodeManagerService. It reads the template's "started"/"exited" lines, restarts a
template that died (its workers count as exited with it), and decides what happens to the tasks
of a worker that died: retried, ended as cancelled, or failed with the worker's exit.
"""

from __future__ import annotations

import logging
import os
import signal

import zmq

from . import lifecycle, protocol
from .node_host import NodeHost
from .task_record import DONE, QUEUED

logger = logging.getLogger(__name__)


class WorkerPool(NodeHost):
    def _start_workers(self, count: int) -> None:
        worker_ids = [os.urandom(16) for _ in range(count)]
        lines = "".join(f"fork {worker_id.hex()}\n" for worker_id in worker_ids)
        self.scheduler.worker_starting(count)
        if not self.template.send(lines):
            self.scheduler.worker_start_failed(count)
        else:
            self.pool_forks.update(worker_ids)

    def _read_template(self) -> None:
        chunk = self.template.read()
        if chunk is None:
            return
        if not chunk:
            if self.running:
                logger.error("worker template exited; restarting it")
                self.poller.unregister(self.template.read_fd)
                self._restart_template()
            return
        self._template_buffer += chunk
        while b"\n" in self._template_buffer:
            line, self._template_buffer = self._template_buffer.split(b"\n", 1)
            parts = line.decode().split()
            if parts[0] == "started":
                worker_id, pid = bytes.fromhex(parts[1]), int(parts[2])
                self.worker_pids[worker_id] = pid
                self.pid_workers[pid] = worker_id
                self.pool_forks.discard(worker_id)
                self.worker_watch.add(worker_id, pid)
            elif parts[0] == "exited":
                self._on_worker_exit(int(parts[1]), int(parts[2]))

    def _restart_template(self) -> None:
        from .template import TemplateHandle

        self.template.close(self.config.shutdown_timeout_s)
        self._template_workers_lost()
        self.template = TemplateHandle.spawn(
            self.template_options, os.path.join(self.session_dir, "logs", "template.log")
        )
        self.poller.register(self.template.read_fd, zmq.POLLIN)
        self._template_buffer = b""

    def _template_workers_lost(self) -> None:
        """The template died, its workers with it, unreported: each counts as exited; its forks never start."""
        for pid, worker_id in list(self.pid_workers.items()):
            self.worker_watch.kill(worker_id)
            self._on_worker_exit(pid, None, cause="its worker template died and took it along")
        self.scheduler.worker_start_failed(len(self.pool_forks))
        self.pool_forks.clear()
        for worker_id in list(self.actors.forking):
            self.actors.fork_lost(worker_id)

    def _kill_worker(self, pid: int) -> None:
        lifecycle.kill_quietly(pid, signal.SIGKILL)

    def _on_worker_exit(self, pid: int, code: int | None, cause: str | None = None) -> None:
        """A worker is gone: `code` is the exit status its template reported, or None with `cause`."""
        worker_id = self.pid_workers.pop(pid, None)
        if worker_id is None:
            return
        self.worker_pids.pop(worker_id, None)
        self.worker_watch.discard(worker_id)
        self.exited_worker_pids[worker_id] = pid
        if len(self.exited_worker_pids) > 1000:
            self.exited_worker_pids.pop(next(iter(self.exited_worker_pids)))
        if self.actors.worker_exited(worker_id, pid, code):
            self.scheduler.remove_worker(worker_id)
            self._client_gone(worker_id)
            return
        if worker_id not in self.clients:
            # Died before registering.
            self.scheduler.worker_start_failed()
        lost, never_started = self.scheduler.worker_died(worker_id)
        self._return_unstarted(never_started)
        for task_id in lost:
            record = self.tasks.get(task_id)
            if record is None or record.state == DONE:
                continue
            if record.force_cancelled or record.cancelled:
                self._finish_with_error(record, "cancelled", None)
            elif record.retries_left != 0:
                record.retries_left -= 1 if record.retries_left > 0 else 0
                self._requeue(record)
            else:
                details = {"pid": pid, "exitcode": code, "task": record.spec.function_name, "cause": cause}
                self._finish_with_error(record, "worker_crashed", details)
        self._client_gone(worker_id)

    def _return_unstarted(self, task_ids: list) -> None:
        """Tasks a dead worker held but never began: queued again, uncharged; cancelled ones end."""
        for task_id in task_ids:
            record = self.tasks.get(task_id)
            if record is None or record.state == DONE or record.cancelled:
                self.scheduler.cancel_queued(task_id)
                if record is not None and record.state != DONE:
                    self._finish_with_error(record, "cancelled", None)
            else:
                record.state, record.worker_id = QUEUED, None

    def _on_worker_blocked(self, client_id: bytes, message: protocol.WorkerBlocked) -> None:
        if message.returned_task_ids:
            self.scheduler.requeue_front(client_id, message.returned_task_ids)
            for task_id in message.returned_task_ids:
                record = self.tasks.get(task_id)
                if record is not None:
                    record.state = QUEUED
                    record.worker_id = None
        self.scheduler.worker_blocked(client_id, message.blocked)
