"""Hooks for front ends (the Jupyter layer) on the driver: where worker output goes, which
tasks the current code submits, which objects `get`/`wait` are blocked on, and when
`shutdown()` begins.

All hooks run on hot paths: a submit listener sees every task id the driver submits (keep
it to an append), the log handler runs on the client's I/O thread (hand the records to
your own queue or send them; do not block), and a wait listener runs at the start of every
blocking `get`/`wait` in the waiting thread (decide quickly; draw nothing there).
No IPython here: the runtime knows nothing of notebooks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .._core import frame_names, session
from ..exceptions import shell_cell_numbers

logger = logging.getLogger(__name__)


def set_log_handler(handler: Callable[[list], None] | None) -> None:
    """Route worker output: `handler(records)` gets dicts with task_id (hex), task_name, pid,
    stream ("stdout"/"stderr") and text, instead of the driver printing them. None restores
    printing."""
    session.hooks.log_handler = handler
    running = session.current()
    if running is not None:
        running.log_handler = adapt_log_handler(handler) if handler is not None else None


def delivers_logs() -> bool:
    """Whether worker output reaches the handler set with `set_log_handler` (a handler is set,
    a cluster is connected and it forwards task output to this driver)."""
    running = session.current()
    return session.hooks.log_handler is not None and running is not None and bool(running.log_to_driver)


def adapt_log_handler(handler: Callable[[list], None]) -> Callable[[list], None]:
    """The client's log callback that hands `handler` plain dicts (see `set_log_handler`)."""

    def deliver(records: list) -> None:
        numbers = shell_cell_numbers() if any(record.stream == "stderr" for record in records) else {}
        handler(
            [
                {
                    "task_id": record.task_id.hex() if record.task_id else None,
                    "task_name": record.task_name,
                    "pid": record.pid,
                    "stream": record.stream,
                    # A warning raised in a function defined in a cell names the cell, as IPython does.
                    "text": frame_names.name_warning_locations(record.text, numbers)
                    if record.stream == "stderr"
                    else record.text,
                }
                for record in records
            ]
        )

    return deliver


def add_submit_listener(listener: Callable[[str], None]) -> None:
    """Call `listener(task_id_hex)` in the submitting thread for every task and actor call."""
    if listener not in session.hooks.submit_listeners:
        session.hooks.submit_listeners.append(listener)


def remove_submit_listener(listener: Callable[[str], None]) -> None:
    try:
        session.hooks.submit_listeners.remove(listener)
    except ValueError:
        pass


class WaitInfo:
    """One blocking `get` or `wait` in progress, as a wait listener sees it.

    Attributes:
        kind: "get" or "wait".
        refs: The ObjectRefs being waited on (a tuple, in the caller's order).
        num_returns: How many must be ready for the call to return (all of them for `get`).
        timeout_s: The caller's timeout, or None.
        started_at: `time.monotonic()` when the wait began.
    """

    __slots__ = ("kind", "refs", "num_returns", "timeout_s", "started_at", "_ids", "_objects")

    def __init__(self, kind: str, refs, ids: list, num_returns: int, timeout_s, objects) -> None:
        self.kind = kind
        self.refs = tuple(refs)
        self.num_returns = num_returns
        self.timeout_s = timeout_s
        self.started_at = time.monotonic()
        self._ids = ids
        self._objects = objects

    @property
    def total(self) -> int:
        return len(self._ids)

    def ready_count(self) -> int:
        """How many of the refs are ready now; never blocks on the cluster (any thread)."""
        objects = self._objects
        with objects.cond:
            values = objects.values
            return sum(1 for object_id in self._ids if object_id in values)

    def __repr__(self) -> str:
        return f"WaitInfo(kind={self.kind!r}, total={self.total}, num_returns={self.num_returns})"


WaitListener = Callable[[WaitInfo], "Callable[[str], None] | None"]


def add_wait_listener(listener: WaitListener) -> None:
    """Call `listener(info)` when a `get` or `wait` starts blocking on the cluster.

    Only calls that block are reported, when they start blocking (not `timeout=0` polls, nor
    calls whose objects are already here). The listener runs in the
    waiting thread and may return a callable; that is called once, in the same thread, when
    the wait ends, with the outcome: "done", "timeout", "error" or "interrupted". Errors in
    listeners are logged and ignored. With no listener, get/wait pay one list check.

    Args:
        listener: `listener(info: WaitInfo) -> finish(outcome) | None`.
    """
    if listener not in session.hooks.wait_listeners:
        session.hooks.wait_listeners.append(listener)


def remove_wait_listener(listener: WaitListener) -> None:
    try:
        session.hooks.wait_listeners.remove(listener)
    except ValueError:
        pass


class WaitWatch:
    """One get/wait while listeners exist: they hear of it only once it actually blocks, so
    gets of objects already here cost a closure call and no listener work."""

    __slots__ = ("_args", "_on_block", "_finishers")

    def __init__(self, kind: str, refs, ids: list, num_returns: int, timeout_s, objects, on_block) -> None:
        self._args = (kind, refs, ids, num_returns, timeout_s, objects)
        self._on_block = on_block
        self._finishers: list | None = None

    def on_block(self, blocked: bool) -> None:
        self._on_block(blocked)
        if blocked and self._finishers is None:
            self._finishers = _wait_started(*self._args)

    def end(self, outcome: str) -> None:
        if self._finishers:
            _wait_ended(self._finishers, outcome)


def _wait_started(kind: str, refs, ids: list, num_returns: int, timeout_s, objects) -> list:
    """Tell the wait listeners a wait started; returns their finish callbacks (maybe [])."""
    info = WaitInfo(kind, refs, ids, num_returns, timeout_s, objects)
    finishers = []
    for listener in list(session.hooks.wait_listeners):
        try:
            finish = listener(info)
        except Exception:
            logger.warning("shoal wait listener %r failed", listener, exc_info=True)
            continue
        if finish is not None:
            finishers.append(finish)
    return finishers


def _wait_ended(finishers: list, outcome: str) -> None:
    for finish in finishers:
        try:
            finish(outcome)
        except Exception:
            logger.warning("shoal wait listener finish %r failed", finish, exc_info=True)


def add_shutdown_listener(listener: Callable[[], None]) -> None:
    """Call `listener()` when `shoal.shutdown()` begins, while the cluster is still connected.

    It runs in the thread that called shutdown, before anything is closed, so a front end can
    take a last look at cluster state (a live view's final summary). Errors are logged and
    ignored; keep it short, since shutdown waits for it.
    """
    if listener not in session.hooks.shutdown_listeners:
        session.hooks.shutdown_listeners.append(listener)


def remove_shutdown_listener(listener: Callable[[], None]) -> None:
    try:
        session.hooks.shutdown_listeners.remove(listener)
    except ValueError:
        pass


__all__ = [
    "WaitInfo",
    "add_shutdown_listener",
    "add_submit_listener",
    "add_wait_listener",
    "delivers_logs",
    "remove_shutdown_listener",
    "remove_submit_listener",
    "remove_wait_listener",
    "set_log_handler",
]
