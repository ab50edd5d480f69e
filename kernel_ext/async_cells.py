"""Waiting for `%%remote --async` cells in the background, and pushing their results.

One thread (`shoal-remote-cell-wait`) per kernel, started when an async cell is submitted and
ending as soon as no async cell is pending, so an idle kernel holds no thread. It polls with
`shoal.wait(..., timeout=...)` so `close()` stops it within one poll interval. A delivery runs
under one lock, whichever thread makes it, so `deliver_ready` returns only once a delivery the
watcher thread has begun is complete. Deliveries also happen on the main thread: before each
cell (`deliver_ready`) and as a blocking get/wait there ends (`on_wait`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import shoal

__all__ = ["AsyncCellWatcher"]

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.1
CLOSE_TIMEOUT_S = 2.0


class AsyncCellWatcher:
    """Calls a callback with each watched ObjectRef once it is ready.

    Callbacks run on the watcher's thread; they must not block for long.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Held while a cell is taken off `_pending` and its callback runs (`_lock` is never held
        # around a callback), and through `deliver_ready`: to that, a cell is either still
        # pending or delivered in full.
        self._delivering = threading.RLock()
        self._pending: list[tuple[object, Callable]] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def watch(self, ref, on_ready: Callable) -> None:
        """Call `on_ready(ref)` from the watcher thread once `ref` is ready.

        Args:
            ref: The ObjectRef of a submitted cell.
            on_ready: Called once with `ref`; exceptions it raises are logged.
        """
        with self._lock:
            if self._stop.is_set():
                raise RuntimeError("the async cell watcher is closed")
            self._pending.append((ref, on_ready))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="shoal-remote-cell-wait", daemon=True)
                self._thread.start()

    def deliver_ready(self) -> None:
        """Deliver, in the calling thread, every watched cell that has finished.

        Run before each notebook cell, so a cell that follows a finished async cell always
        sees the names it assigned (not only once the watcher thread gets round to it, and not
        while that thread is halfway through pushing them).
        """
        with self._delivering:  # a delivery the watcher thread began ends first
            with self._lock:
                refs = [ref for ref, _ in self._pending]
            if not refs:
                return
            try:
                ready, _ = shoal.wait(refs, num_returns=len(refs), timeout=0)
            except Exception:
                return
            for ref in ready:
                self._deliver(ref)

    def on_wait(self, info) -> Callable[[str], None] | None:
        """A wait listener (`shoal.util.output.add_wait_listener`): when a `get`/`wait` of the
        main thread that blocked ends, the cells that finished meanwhile are delivered before it
        returns, so `shoal.get(_remote)` is followed by the cell's names, in the same cell."""
        if threading.current_thread() is not threading.main_thread():
            return None
        with self._lock:
            if not self._pending:
                return None
        return self._after_wait

    def _after_wait(self, outcome: str) -> None:
        if outcome == "done":
            self.deliver_ready()

    def pending(self) -> int:
        """How many watched cells have not finished yet."""
        with self._lock:
            return len(self._pending)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Stop watching (pending callbacks are dropped) and join the thread; idempotent.

        Args:
            timeout_s: How long to wait for the thread to end.
        """
        with self._lock:
            self._stop.set()
            self._pending.clear()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
            if thread.is_alive():
                logger.warning("the async cell watcher did not stop within %.1f s", timeout_s)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:
                    refs = [ref for ref, _ in self._pending]
                    if not refs:
                        self._thread = None
                        return
                try:
                    ready, _ = shoal.wait(refs, num_returns=1, timeout=POLL_INTERVAL_S)
                except Exception:  # the cluster went away; nothing left to wait for
                    logger.warning("stopped waiting for async cells", exc_info=True)
                    break
                for ref in ready:
                    self._deliver(ref)
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _deliver(self, ref) -> None:
        with self._delivering:
            with self._lock:
                for index, (pending_ref, callback) in enumerate(self._pending):
                    if pending_ref is ref or pending_ref == ref:
                        del self._pending[index]
                        on_ready = callback
                        break
                else:
                    return
            try:
                on_ready(ref)
            except Exception:  # a callback's failure must not stop the other cells' delivery
                logger.exception("pushing the result of an async cell failed")
