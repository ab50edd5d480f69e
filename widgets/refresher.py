"""The one refresher thread per kernel that keeps shoal's widgets live.

It owns the `ClusterEvents` subscription and the queue of work that widget buttons hand over;
comm callbacks only enqueue, they never call into shoal. It must not import ipywidgets.

    button click (comm thread) --submit()--> actions queue --+
                                                             v
    ClusterEvents --next()--> shoal-widgets-refresher --_refresh(snapshot)--> live widgets

The thread starts with the first live widget (or submitted action) and exits when no live widget
and no action remain, when the cluster it was watching shuts down, or on `stop_refresher()`.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger(__name__)

THREAD_NAME = "shoal-widgets-refresher"
DEFAULT_INTERVAL_S = 1.0
_JOIN_TIMEOUT_S = 5.0


def live_updates_enabled() -> bool:
    """False when `SHOAL_NONINTERACTIVE=1`: widgets then render once and stay static."""
    return os.environ.get("SHOAL_NONINTERACTIVE", "") not in ("1", "true", "yes")


class RefreshTarget(Protocol):
    def _refresh(self, snapshot: dict | None) -> bool:
        """Update from the newest snapshot (None if none yet); False to stop being refreshed."""
        ...

    def _cluster_gone(self) -> None:
        """The cluster this widget watched shut down; render a final static state."""
        ...


class WidgetRefresher:
    """The refresher thread: drains the action queue, reads events, refreshes targets.

    Refreshes are throttled to one per `interval_s`; actions run as soon as they are queued.
    """

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S):
        self.interval_s = interval_s
        self._targets: list[RefreshTarget] = []
        self._actions: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._exited = False  # set under _module_lock when the thread decides to leave
        # True once a cluster was seen, from this thread or when a target was added: its shutdown
        # then ends the refresher, even if it happens before the thread's first look.
        self._saw_cluster = False
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def start(self) -> None:
        self._thread.start()

    def add(self, target: RefreshTarget) -> None:
        import shoal

        if shoal.is_initialized():
            self._saw_cluster = True
        if target not in self._targets:
            self._targets.append(target)
        self._wake.set()

    def remove(self, target: RefreshTarget) -> None:
        if target in self._targets:
            self._targets.remove(target)
        self._wake.set()

    def submit(self, action: Callable[[], object]) -> None:
        self._actions.put(action)
        self._wake.set()

    def stop(self, timeout_s: float = _JOIN_TIMEOUT_S) -> None:
        """Ask the thread to exit and wait for it (idempotent, bounded by `timeout_s`)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        import shoal
        from shoal.util.state import ClusterEvents

        events = None
        snapshot = None
        last_refresh = 0.0
        try:
            while not self._stop.is_set():
                if self._run_actions(events):
                    if events is not None:
                        events.close()
                        events = None
                with _module_lock:
                    targets = list(self._targets)
                    if not targets and self._actions.empty():
                        self._exited = True
                        return
                initialized = shoal.is_initialized()
                if initialized:
                    self._saw_cluster = True
                    if events is None:
                        try:
                            events = ClusterEvents()
                        except Exception:
                            logger.debug("could not subscribe to cluster events", exc_info=True)
                    if events is not None:
                        try:
                            snapshot = events.next(timeout_s=0) or snapshot
                        except Exception:
                            logger.debug("reading cluster events failed", exc_info=True)
                elif self._saw_cluster:
                    # The cluster shut down: widgets freeze on a final render and let the thread go.
                    if events is not None:
                        events.close()
                        events = None
                    with _module_lock:
                        self._targets.clear()
                    for target in targets:
                        _call_quietly(target._cluster_gone)
                    self._saw_cluster = False
                    continue
                now = time.monotonic()
                if now - last_refresh >= self.interval_s:
                    last_refresh = now
                    for target in targets:
                        keep = True
                        try:
                            keep = target._refresh(snapshot) is not False
                        except Exception:
                            logger.debug("widget refresh failed", exc_info=True)
                        if not keep:
                            with _module_lock:
                                if target in self._targets:
                                    self._targets.remove(target)
                wait_s = max(0.0, min(self.interval_s - (time.monotonic() - last_refresh), 0.25))
                self._wake.wait(wait_s)
                self._wake.clear()
        finally:
            with _module_lock:
                self._exited = True
            if events is not None:
                events.close()

    def _run_actions(self, events) -> bool:
        """Run every queued action on this thread; True if any ran."""
        ran = False
        while True:
            try:
                action = self._actions.get_nowait()
            except queue.Empty:
                return ran
            if not ran and events is not None:
                # An action may shut the cluster down: release our subscription first.
                events.close()
            ran = True
            _call_quietly(action)


def _call_quietly(function: Callable[[], object]) -> None:
    try:
        function()
    except Exception:
        logger.warning("shoal widget action %r failed", function, exc_info=True)


_module_lock = threading.RLock()
_current: WidgetRefresher | None = None


def _running() -> WidgetRefresher:
    """The live refresher, started if there is none (caller holds _module_lock)."""
    global _current
    if _current is None or _current._exited or _current._stop.is_set():
        _current = WidgetRefresher()
        _current.start()
    return _current


def register(target: RefreshTarget) -> None:
    """Refresh `target` about once a second on the refresher thread (started if needed)."""
    with _module_lock:
        _running().add(target)


def unregister(target: RefreshTarget) -> None:
    """Stop refreshing `target`; the thread exits once nothing is left to refresh."""
    with _module_lock:
        if _current is not None:
            _current.remove(target)


def submit(action: Callable[[], object]) -> None:
    """Run `action` on the refresher thread. Safe to call from a comm (button) callback."""
    with _module_lock:
        _running().submit(action)


def current_thread() -> threading.Thread | None:
    """The refresher thread if it is running, else None."""
    with _module_lock:
        if _current is not None and _current.thread.is_alive():
            return _current.thread
        return None


def stop_refresher(timeout_s: float = _JOIN_TIMEOUT_S) -> None:
    """Stop the refresher thread (idempotent); live widgets stop updating.

    Args:
        timeout_s: how long to wait for the thread to exit.
    """
    global _current
    with _module_lock:
        refresher, _current = _current, None
    if refresher is not None:
        refresher.stop(timeout_s)
