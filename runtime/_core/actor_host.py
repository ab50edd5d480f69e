"""Hosting an actor with concurrency: async actors on an event loop, threaded actors on pools.

A plain actor (max_concurrency=1, no async methods) runs its calls on the worker's main
thread like tasks, one at a time in order. Otherwise calls are started in arrival order here:
coroutines on one event loop thread, limited by a semaphore per concurrency group; sync
methods on a thread pool per group.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from . import task_context
from .protocol import TaskExec, TaskResult

DEFAULT_GROUP = "_default"


class ActorHost:
    def __init__(self, executor, options: dict):
        self.executor = executor
        self.is_async = bool(options.get("is_async"))
        self.max_concurrency = int(options.get("max_concurrency") or (1000 if self.is_async else 1))
        self.groups = dict(options.get("concurrency_groups") or {})
        self.method_groups = dict(options.get("method_groups") or {})
        self.concurrent = self.is_async or self.max_concurrency > 1 or bool(self.groups)
        self.running: dict[bytes, Future] = {}  # run_coroutine_threadsafe's futures
        if not self.concurrent:
            return
        if self.is_async:
            self.loop = asyncio.new_event_loop()
            self.thread = threading.Thread(target=self._run_loop, name="shoal-actor-loop", daemon=True)
            self.thread.start()
            self.semaphores = asyncio.run_coroutine_threadsafe(self._make_semaphores(), self.loop).result()
        else:
            self.pools = {DEFAULT_GROUP: ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="shoal-actor")}
            for name, size in self.groups.items():
                self.pools[name] = ThreadPoolExecutor(int(size), thread_name_prefix=f"shoal-actor-{name}")

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _make_semaphores(self) -> dict:
        semaphores = {DEFAULT_GROUP: asyncio.Semaphore(self.max_concurrency)}
        for name, size in self.groups.items():
            semaphores[name] = asyncio.Semaphore(int(size))
        return semaphores

    def _group(self, spec) -> str:
        group = self.method_groups.get(spec.function_name) or DEFAULT_GROUP
        return group if (group in self.groups or group == DEFAULT_GROUP) else DEFAULT_GROUP

    def submit(self, task: TaskExec) -> None:
        group = self._group(task.spec)
        if self.is_async:
            future = asyncio.run_coroutine_threadsafe(self._run_async(task, self.semaphores[group]), self.loop)
            self.running[task.spec.task_id] = future
            future.add_done_callback(lambda _f, task_id=task.spec.task_id: self.running.pop(task_id, None))
        else:
            self.pools[group].submit(self.executor.run_task, task)

    def cancel(self, task_id: bytes) -> bool:
        future = self.running.get(task_id)
        if future is None:
            return False
        future.cancel()
        return True

    async def _run_async(self, task: TaskExec, semaphore: asyncio.Semaphore) -> None:
        executor = self.executor
        spec = task.spec
        started = time.perf_counter()
        retriable = False
        async with semaphore:
            try:
                target = executor._target(spec)
                args, kwargs, resolved = executor._resolve_args(task)
                task_context.set_current(spec, task.gpu_ids, {id(v) for v in resolved})
                result = target(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
                values = executor._store_returns(spec, result)
            except asyncio.CancelledError:
                from ..exceptions import TaskCancelledError

                values, retriable = executor.failure_values(spec, TaskCancelledError(spec.task_id.hex()))
            except BaseException as exc:  # noqa: BLE001
                values, retriable = executor.failure_values(spec, exc)
            finally:
                task_context.clear_current()
        executor.client.finish_task(TaskResult(spec.task_id, values, retriable, time.perf_counter() - started))
        if executor.exit_requested:
            executor.stop_actor_process()
