"""ActorPool: spread work over a fixed set of actors, results in order or as they finish."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .. import api


class ActorPool:
    """Runs `fn(actor, value)` calls on whichever actor is free.

    Args:
        actors: The actor handles to use; each runs one submitted call at a time.

    Example:
        pool = ActorPool([Worker.remote() for _ in range(2)])
        results = list(pool.map(lambda actor, v: actor.double.remote(v), [1, 2, 3]))
    """

    def __init__(self, actors: list):
        self._idle = list(actors)
        self._in_flight: dict = {}  # ObjectRef -> (submission index, actor)
        self._by_index: dict = {}  # submission index -> ObjectRef
        self._next_index = 0  # index the next submitted call gets
        self._next_return = 0  # index get_next() returns next
        self._waiting: list = []  # (fn, value) submitted while every actor was busy

    def map(self, fn: Callable[[Any, Any], Any], values: Iterable) -> Iterable:
        """Apply fn to every value; yields results in the order of `values`."""
        self._drain_previous()
        for value in values:
            self.submit(fn, value)
        while self.has_next():
            yield self.get_next()

    def map_unordered(self, fn: Callable[[Any, Any], Any], values: Iterable) -> Iterable:
        """Like map, but yields each result as soon as it is ready."""
        self._drain_previous()
        for value in values:
            self.submit(fn, value)
        while self.has_next():
            yield self.get_next_unordered()

    def _drain_previous(self) -> None:
        while self.has_next():
            self.get_next_unordered()

    def submit(self, fn: Callable[[Any, Any], Any], value: Any) -> None:
        """Start fn(actor, value) on a free actor, or queue it until one is free."""
        if not self._idle:
            self._waiting.append((fn, value))
            return
        actor = self._idle.pop()
        ref = fn(actor, value)
        self._in_flight[ref] = (self._next_index, actor)
        self._by_index[self._next_index] = ref
        self._next_index += 1

    def has_next(self) -> bool:
        """Whether any submitted call has a result not yet returned."""
        return bool(self._in_flight) or bool(self._waiting)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order.

        Raises:
            StopIteration: Nothing is pending.
            TimeoutError: Not ready within `timeout` seconds.
            ValueError: Mixed with get_next_unordered().
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return >= self._next_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        ref = self._by_index[self._next_return]
        if timeout is not None:
            ready, _ = api.wait([ref], timeout=timeout)
            if not ready:
                if ignore_if_timedout:
                    return None
                raise TimeoutError("Timed out waiting for result")
        del self._by_index[self._next_return]
        self._next_return += 1
        _, actor = self._in_flight.pop(ref)
        self._release(actor)
        return api.get(ref)

    def get_next_unordered(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """Whichever pending result is ready first."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        ready, _ = api.wait(list(self._in_flight), num_returns=1, timeout=timeout)
        if not ready:
            if ignore_if_timedout:
                return None
            raise TimeoutError("Timed out waiting for result")
        ref = ready[0]
        index, actor = self._in_flight.pop(ref)
        del self._by_index[index]
        self._next_return = max(self._next_return, index + 1)
        self._release(actor)
        return api.get(ref)

    def _release(self, actor) -> None:
        self._idle.append(actor)
        if self._waiting:
            fn, value = self._waiting.pop(0)
            self.submit(fn, value)

    def has_free(self) -> bool:
        """Whether an actor is idle and nothing is waiting for one."""
        return bool(self._idle) and not self._waiting

    def pop_idle(self):
        """Take an idle actor out of the pool (None if none is free)."""
        return self._idle.pop() if self.has_free() else None

    def push(self, actor) -> None:
        """Add an actor to the pool.

        Raises:
            ValueError: The actor is already in the pool.
        """
        busy = [a for _, a in self._in_flight.values()]
        if actor in self._idle or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._release(actor)
