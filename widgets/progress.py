"""`ProgressBar` and `track`: how many of a list of ObjectRefs are ready; `WaitProgress`: the
bar of a cell blocked in `shoal.get`/`shoal.wait` (drawn by the kernel extension).

Both are `LiveView`s. A ProgressBar's refresher polls `shoal.wait(refs, timeout=0)`, and once
every ref is ready (or the cluster shuts down) its output becomes a static summary line. A
WaitProgress reads its wait's ready count; when the wait ends its summary line ends the cell.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable

from .live import LiveView

_STYLE = "font-family:var(--jp-ui-font-family,sans-serif);font-size:13px"


def render_progress_text(description: str, ready: int, total: int) -> str:
    return f"{description}: {ready}/{total} ready"


def render_progress_html(description: str, ready: int, total: int, detail: str = "") -> str:
    """A labelled bar: `tasks [=====     ] 10/20 ready (50%)`, then `detail`."""
    percent = 100.0 * ready / total if total else 100.0
    colour = "#2e7d32" if ready >= total else "#1e88e5"
    return (
        f"<div class='shoal-progress' style='{_STYLE}'>"
        f"<span style='display:inline-block;min-width:4em'>{html.escape(description)}</span> "
        "<span style='display:inline-block;width:240px;height:10px;background:#e3e3e3;border-radius:5px;"
        "vertical-align:middle;overflow:hidden'>"
        f"<span class='shoal-fill' style='display:block;height:100%;width:{percent:.0f}%;background:{colour}'>"
        "</span></span> "
        f"<span class='shoal-progress-text'>{ready}/{total} ready ({percent:.0f}%){html.escape(detail)}</span></div>"
    )


class ProgressBar(LiveView):
    """A progress bar over ObjectRefs: `ready/total` as a bar and its numbers.

    Args:
        refs: the ObjectRefs to watch.
        description: the text before the bar.
        live: refresh on the refresher thread; None (default) means "unless non-interactive".

    Example:
        refs = [f.remote(i) for i in range(100)]
        shoal.widgets.track(refs)
    """

    def __init__(self, refs, description: str = "tasks", live: bool | None = None, **kwargs):
        self.refs = list(refs)
        self.total = len(self.refs)
        self.ready = 0
        self.description = description
        super().__init__(live=live, **kwargs)

    @property
    def done(self) -> bool:
        return self.ready >= self.total

    def update(self) -> int:
        """Poll the refs once (never blocks) and redraw; returns how many are ready."""
        with self._lock:
            self._poll(None)
            self._draw()
        return self.ready

    def _poll(self, snapshot: dict | None) -> None:
        import shoal

        if self.total and not self.done and shoal.is_initialized():
            ready, _ = shoal.wait(self.refs, num_returns=self.total, timeout=0)
            self.ready = len(ready)

    def _finished(self) -> bool:
        return self.done

    def _render_text(self) -> str:
        return render_progress_text(self.description, self.ready, self.total)

    def _render_html(self) -> str:
        return render_progress_html(self.description, self.ready, self.total)


def track(refs, description: str = "tasks") -> ProgressBar:
    """Show a ProgressBar over `refs` (displayed at once inside IPython) and return it.

    Unlike a last-expression display, this works anywhere in a cell.
    """
    bar = ProgressBar(refs, description=description)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return bar
    if get_ipython() is not None:
        display(bar)
    return bar


class WaitProgress(LiveView):
    """What a notebook cell shows while it blocks in `shoal.get`/`shoal.wait` (kernel extension).

    Waits on several refs show `ready/total` as a bar; a `%%remote` cell (`elapsed_only`) shows
    how long it has run. The refresher reads the wait's progress; `finish` (the wait ended, on
    the cell's thread) stops the view: its place is left empty and its static summary, such as
    `shoal.get: 8/8 ready, finished after 3.2 s`, is the cell's last output, after whatever the
    cell printed while it waited.

    Args:
        info: the wait, as the runtime's wait listener sees it (`shoal.util.output.WaitInfo`:
            `total`, `num_returns`, `started_at` and `ready_count()`).
        description: the text before the bar, such as "shoal.get" or "%%remote".
        elapsed_only: show elapsed time and no bar.
        clock: monotonic seconds, the clock `info.started_at` is on (tests pass their own).
        live: refresh on the refresher thread; None (default) means "unless non-interactive".
    """

    def __init__(
        self,
        info,
        description: str,
        elapsed_only: bool = False,
        clock: Callable[[], float] = time.monotonic,
        live: bool | None = None,
        **kwargs,
    ):
        self.info = info
        self.total = info.total
        self.num_returns = info.num_returns
        self.description = description
        self.elapsed_only = elapsed_only
        self.ready = 0
        self.elapsed_s = 0.0
        self.outcome: str | None = None  # how the wait ended; None while it runs
        self._clock = clock
        super().__init__(live=live, **kwargs)

    def finish(self, outcome: str, ready: int, elapsed_s: float) -> None:
        """The wait ended with `outcome` ("done", "error", "timeout", "interrupted", "closed"):
        stop, and show the summary after the cell's output. Call it on the cell's thread."""
        with self._lock:
            if self._stopped:
                return
            self.outcome, self.ready, self.elapsed_s = outcome, ready, elapsed_s
            self._stop_locked("", after_output=True)

    def _poll(self, snapshot: dict | None) -> None:
        if self.outcome is not None:
            return
        try:
            self.ready = self.info.ready_count()
        except Exception:  # the client closed under us: keep the last count
            pass
        self.elapsed_s = max(0.0, self._clock() - self.info.started_at)

    def _render_text(self) -> str:
        if self.outcome is not None:
            return self._summary_text(self.outcome)
        if self.elapsed_only:
            return f"{self.description}: running for {self.elapsed_s:.0f} s"
        return f"{self.description}: {self.ready}/{self.total} ready{self._detail()}"

    def _render_html(self) -> str:
        if self.outcome is not None:
            colour = "#2e7d32" if self.outcome == "done" else "#c62828"
            text = html.escape(self._summary_text(self.outcome))
            return f"<div class='shoal-wait' style='{_STYLE};color:{colour}'>{text}</div>"
        if self.elapsed_only:
            return f"<div class='shoal-progress' style='{_STYLE}'>{html.escape(self._render_text())}</div>"
        return render_progress_html(self.description, self.ready, self.total, detail=self._detail())

    def _detail(self) -> str:
        waiting = f" (waiting for {self.num_returns})" if self.num_returns < self.total else ""
        return f"{waiting}, {self.elapsed_s:.0f} s"

    def _summary_text(self, outcome: str) -> str:
        words = _OUTCOME_WORDS.get(outcome, outcome)
        if self.elapsed_only:
            return f"{self.description}: {words} after {self.elapsed_s:.1f} s"
        return f"{self.description}: {self.ready}/{self.total} ready, {words} after {self.elapsed_s:.1f} s"


_OUTCOME_WORDS = {
    "done": "finished",
    "error": "failed",
    "timeout": "timed out",
    "interrupted": "interrupted",
    "closed": "stopped watching",
}
