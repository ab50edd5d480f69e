"""A progress bar in the cell while it blocks in `shoal.get`/`shoal.wait` or a `%%remote` cell.

Owns the kernel side of the runtime's wait hook (`shoal.util.output.add_wait_listener`):
deciding which waits deserve a bar and showing it once the wait has lasted `DELAY_S`. The bar
is a `WaitProgress`, a `LiveView`: the refresher keeps it current, and when the wait ends its
place is left empty and its static summary line follows whatever the cell printed meanwhile
(so the summary ends the cell's output, as its last word). Installed by `%load_ext shoal` only
inside an ipykernel; never shown when `SHOAL_NONINTERACTIVE=1`.

    cell thread: get/wait ──listener(info)──▶ WaitDisplays.on_wait ──▶ _PendingWait (nothing drawn)
    shoal-widgets-refresher ──_refresh──▶ tick(now): after DELAY_S show a WaitProgress
    shoal-widgets-refresher ──WaitProgress._refresh──▶ the bar redrawn from info.ready_count()
    cell thread: get/wait returns/raises ──finish(outcome)──▶ before_summary() (unfinished
        output lines go out) ──▶ WaitProgress.finish: place emptied, summary shown at the end

No thread of its own: the widgets' one refresher thread does the drawing. ipywidgets is imported
only when a bar is first shown. A wait qualifies when it is on the kernel's main thread (the
cell, not a background thread), may block (timeout != 0), and waits for at least `MIN_REFS`
refs, or is the wait of a `%%remote` cell (see `labelled`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from shoal.util import output
from shoal.widgets import refresher

__all__ = ["DELAY_S", "LINGER_S", "MIN_REFS", "WaitDisplays", "labelled"]

logger = logging.getLogger(__name__)

DELAY_S = 1.0  # a wait shorter than this draws nothing
MIN_REFS = 2  # get/wait for fewer refs shows no bar (a %%remote cell always may)
LINGER_S = 30.0  # stay registered with the refresher this long after the last wait, so a loop
# of short gets does not start and stop the refresher thread each time

_label: str | None = None  # set by `labelled` around a %%remote cell's wait (main thread only)


@contextlib.contextmanager
def labelled(label: str):
    """Waits inside this block (on the main thread) get a bar labelled `label` showing elapsed
    time, whatever their number of refs; `%%remote` wraps its wait in it."""
    global _label
    previous, _label = _label, label
    try:
        yield
    finally:
        _label = previous


class _WaitView(Protocol):
    """What WaitDisplays shows for a wait: a `WaitProgress`, or a test's fake."""

    def finish(self, outcome: str, ready: int, elapsed_s: float) -> None: ...


def _show_bar(info, label: str | None) -> _WaitView:
    """The bar of one wait, displayed (a `LiveView`: the refresher keeps it current, and its
    `finish` leaves the summary line after the cell's output)."""
    from IPython.display import display
    from shoal.widgets.progress import WaitProgress

    view = WaitProgress(info, label or f"shoal.{info.kind}", elapsed_only=label is not None)
    display(view)
    return view


class _PendingWait:
    """One qualifying wait: pending until DELAY_S, then shown, then finished (in that order)."""

    __slots__ = ("info", "label", "view", "finished")

    def __init__(self, info, label: str | None) -> None:
        self.info = info
        self.label = label
        self.view: _WaitView | None = None  # once shown
        self.finished = False


class WaitDisplays:
    """The wait listener and the refresh target that draws its bars; `install()`, `close()`.

    Args:
        delay_s: how long a wait runs before its bar appears.
        min_refs: the fewest refs a plain get/wait must wait for to get a bar.
        view_factory: `view_factory(info, label)` makes and displays the view, which has
            `finish(outcome, ready, elapsed_s)` (a `WaitProgress` unless a test passes a fake).
        linger_s: how long to stay registered with the refresher after the last wait.
        before_summary: called before a shown bar's summary line (the output router's flush of
            unfinished lines, so they come before it).
    """

    def __init__(
        self,
        delay_s: float = DELAY_S,
        min_refs: int = MIN_REFS,
        view_factory: Callable[..., _WaitView] | None = None,
        linger_s: float = LINGER_S,
        before_summary: Callable[[], None] | None = None,
    ) -> None:
        self.delay_s = delay_s
        self.min_refs = min_refs
        self.linger_s = linger_s
        self._view_factory = view_factory or _show_bar
        self._before_summary = before_summary
        self._lock = threading.RLock()
        self._waits: list[_PendingWait] = []
        self._last_active = time.monotonic()
        self._closed = False

    def install(self) -> None:
        output.add_wait_listener(self.on_wait)

    def close(self) -> None:
        """Stop listening, finalize any bar still shown and leave the refresher; idempotent."""
        output.remove_wait_listener(self.on_wait)
        with self._lock:
            self._closed = True
            waits, self._waits = self._waits, []
            for wait in waits:
                self._finish_locked(wait, "closed")
        refresher.unregister(self)

    # ----------------------------------------------------------- in the waiting thread

    def on_wait(self, info) -> Callable[[str], None] | None:
        """The runtime's wait listener: track qualifying waits; cheap for the rest."""
        if threading.current_thread() is not threading.main_thread():
            return None
        label = _label
        if label is None and info.num_returns < self.min_refs:
            return None
        if not refresher.live_updates_enabled():
            return None
        wait = _PendingWait(info, label)
        with self._lock:
            if self._closed:
                return None
            self._waits.append(wait)
            self._last_active = time.monotonic()
            # Under our lock, so an idle `_refresh` cannot unregister us after this.
            refresher.register(self)
        return lambda outcome: self.finish(wait, outcome)

    def finish(self, wait: _PendingWait, outcome: str) -> None:
        with self._lock:
            if wait in self._waits:
                self._waits.remove(wait)
            self._last_active = time.monotonic()
            self._finish_locked(wait, outcome)

    def _finish_locked(self, wait: _PendingWait, outcome: str) -> None:
        if wait.finished:
            return
        wait.finished = True
        if wait.view is None:
            return  # ended before its delay: nothing was drawn
        ready = wait.info.total if outcome == "done" and wait.info.kind == "get" else _ready(wait.info)
        try:
            if self._before_summary is not None:
                self._before_summary()
            wait.view.finish(outcome, ready, time.monotonic() - wait.info.started_at)
        except Exception:
            logger.warning("finalizing the shoal wait progress bar failed", exc_info=True)

    # ----------------------------------------------------------- on the refresher thread

    def tick(self, now: float) -> None:
        """Show the bars of waits older than the delay (a shown bar keeps itself current)."""
        with self._lock:
            for wait in list(self._waits):
                if wait.view is not None or now - wait.info.started_at < self.delay_s:
                    continue
                try:
                    wait.view = self._view_factory(wait.info, wait.label)
                except Exception:
                    logger.warning("showing the shoal wait progress bar failed", exc_info=True)
                    self._waits.remove(wait)
            if not self._waits and now - self._last_active > self.linger_s:
                refresher.unregister(self)

    @property
    def waiting(self) -> int:
        """How many qualifying waits are in progress."""
        with self._lock:
            return len(self._waits)

    def _refresh(self, snapshot: dict | None) -> bool:
        self.tick(time.monotonic())
        return True  # `tick` unregisters us itself, under our lock

    def _cluster_gone(self) -> None:
        """The refresher dropped us; the waits end on their own (their get raises)."""


def _ready(info) -> int:
    try:
        return info.ready_count()
    except Exception:  # the client closed under us: show what we can
        return 0
