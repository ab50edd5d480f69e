"""A first-in first-out queue shared by tasks and actors, held by a small async actor."""

from __future__ import annotations

import asyncio
import queue as _stdlib_queue
from typing import Any

from .. import api
from ..actor import kill
from ..api import remote


class Empty(_stdlib_queue.Empty):
    """get() found nothing (non-blocking) or nothing arrived within the timeout."""


class Full(_stdlib_queue.Full):
    """put() found no room (non-blocking) or none freed within the timeout."""


class _QueueActor:
    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.queue = asyncio.Queue(maxsize)

    def qsize(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()

    def full(self) -> bool:
        return self.queue.full()

    async def put(self, item, timeout: float | None = None) -> None:
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            raise Full from None

    async def get(self, timeout: float | None = None):
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Empty from None

    def put_nowait(self, item) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            raise Full from None

    def put_nowait_batch(self, items: list) -> None:
        if self.maxsize > 0 and len(items) + self.qsize() > self.maxsize:
            raise Full(f"Cannot add {len(items)} items to queue of size {self.qsize()} and maxsize {self.maxsize}.")
        for item in items:
            self.queue.put_nowait(item)

    def get_nowait(self):
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            raise Empty from None

    def get_nowait_batch(self, num_items: int) -> list:
        if num_items > self.qsize():
            raise Empty(f"Cannot get {num_items} items from queue of size {self.qsize()}.")
        return [self.queue.get_nowait() for _ in range(num_items)]


class Queue:
    """A queue usable from the driver, tasks and actors (pass the Queue object around).

    Args:
        maxsize: Capacity; 0 means unbounded.
        actor_options: Options for the actor that holds the items (default num_cpus=0).

    Example:
        q = Queue()
        q.put(1)
        assert q.get() == 1
    """

    def __init__(self, maxsize: int = 0, actor_options: dict | None = None):
        if not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError(f"maxsize must be a non-negative int, got {maxsize!r}")
        self.maxsize = maxsize
        options = {"num_cpus": 0, **(actor_options or {})}
        self._actor: Any = remote(_QueueActor).options(**options).remote(maxsize)

    @property
    def actor(self) -> Any:
        """The handle of the actor that holds the items.

        Raises:
            RuntimeError: The queue was shut down.
        """
        if self._actor is None:
            raise RuntimeError("this Queue was shut down (Queue.shutdown()); make a new Queue")
        return self._actor

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        return api.get(self.actor.qsize.remote())

    qsize = size

    def empty(self) -> bool:
        return api.get(self.actor.empty.remote())

    def full(self) -> bool:
        return api.get(self.actor.full.remote())

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add an item; blocks while full unless block=False.

        Raises:
            Full: No room (block=False) or none within `timeout`.
            ValueError: Negative timeout.
        """
        if not block:
            return api.get(self.actor.put_nowait.remote(item))
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        api.get(self.actor.put.remote(item, timeout))

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if not block:
            return await self.actor.put_nowait.remote(item)
        await self.actor.put.remote(item, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return an item; blocks while empty unless block=False.

        Raises:
            Empty: Nothing there (block=False) or nothing within `timeout`.
            ValueError: Negative timeout.
        """
        if not block:
            return api.get(self.actor.get_nowait.remote())
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        return api.get(self.actor.get.remote(timeout))

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        if not block:
            return await self.actor.get_nowait.remote()
        return await self.actor.get.remote(timeout)

    def put_nowait(self, item: Any) -> None:
        return self.put(item, block=False)

    def put_nowait_batch(self, items: list) -> None:
        if not isinstance(items, list):
            raise TypeError("put_nowait_batch expects a list of items")
        api.get(self.actor.put_nowait_batch.remote(items))

    def get_nowait(self) -> Any:
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list:
        if not isinstance(num_items, int) or num_items < 0:
            raise ValueError("num_items must be a non-negative int")
        return api.get(self.actor.get_nowait_batch.remote(num_items))

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """Stop the queue's actor; the queue cannot be used afterwards."""
        if self._actor is not None:
            kill(self._actor)
        self._actor = None


__all__ = ["Empty", "Full", "Queue"]
