"""`ProgressBar` and `track`: how many of a list of ObjectRefs are ready; `WaitProgress`: the
bar of a cell blocked in `shoal.get`/`shoal.wait` (drawn by the kernel extension).

A ProgressBar is a `LiveView`: the refresher thread polls `shoal.wait(refs, timeout=0)`, and
once every ref is ready (or the cluster shuts down) its output becomes a static summary line.
"""

from __future__ import annotations

import html

import ipywidgets

from .live import LiveView

_STYLE = "font-family:var(--jp-ui-font-family,sans-serif);font-size:13px"


def render_progress_text(description: str, ready: int, total: int) -> str:
    return f"{description}: {ready}/{total} ready"


def render_progress_html(description: str, ready: int, total: int) -> str:
    """A labelled bar: `tasks [=====     ] 10/20 ready (50%)`."""
    percent = 100.0 * ready / total if total else 100.0
    colour = "#2e7d32" if ready >= total else "#1e88e5"
    return (
        f"<div class='shoal-progress' style='{_STYLE}'>"
        f"<span style='display:inline-block;min-width:4em'>{html.escape(description)}</span> "
        "<span style='display:inline-block;width:240px;height:10px;background:#e3e3e3;border-radius:5px;"
        "vertical-align:middle;overflow:hidden'>"
        f"<span class='shoal-fill' style='display:block;height:100%;width:{percent:.0f}%;background:{colour}'>"
        "</span></span> "
        f"<span class='shoal-progress-text'>{ready}/{total} ready ({percent:.0f}%)</span></div>"
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


class WaitProgress(ipywidgets.HBox):
    """What a notebook cell shows while it blocks in `shoal.get`/`shoal.wait` (kernel extension).

    Waits on several refs show `ready/total` as a bar; a `%%remote` cell (`elapsed_only`) shows
    how long it has run. `summary()` is the static line that replaces the widget when the wait
    ends, so a saved notebook keeps the outcome without the widget.

    Args:
        total: how many refs the wait is on.
        num_returns: how many must be ready for it to return (`total` for a get).
        description: the text before the bar, such as "shoal.get" or "%%remote".
        elapsed_only: show elapsed time and no bar.
    """

    def __init__(self, total: int, num_returns: int, description: str, elapsed_only: bool = False, **kwargs):
        self.total = total
        self.num_returns = num_returns
        self.description = description
        self.elapsed_only = elapsed_only
        self.ready = 0
        self.elapsed_s = 0.0
        self._bar = ipywidgets.IntProgress(value=0, min=0, max=max(total, 1), description=description)
        self._label = ipywidgets.Label(value=self._text())
        children = [self._label] if elapsed_only else [self._bar, self._label]
        super().__init__(children=children, **kwargs)
        self._draw()

    def update(self, ready: int, elapsed_s: float) -> None:
        self.ready, self.elapsed_s = ready, elapsed_s
        self._draw()

    def _draw(self) -> None:
        self._bar.value = min(self.ready, self._bar.max)
        self._label.value = self._text()

    def _text(self) -> str:
        if self.elapsed_only:
            return f"{self.description}: running for {self.elapsed_s:.0f} s"
        text = f"{self.ready}/{self.total} ready"
        if self.num_returns < self.total:
            text += f" (waiting for {self.num_returns})"
        return f"{text}, {self.elapsed_s:.0f} s"

    def summary(self, outcome: str, ready: int, elapsed_s: float) -> WaitSummary:
        """The static line for a wait that ended with `outcome` ("done", "error", ...)."""
        if self.elapsed_only:
            what = f"{self.description}: {_OUTCOME_WORDS.get(outcome, outcome)} after {elapsed_s:.1f} s"
        else:
            what = (
                f"{self.description}: {ready}/{self.total} ready, "
                f"{_OUTCOME_WORDS.get(outcome, outcome)} after {elapsed_s:.1f} s"
            )
        return WaitSummary(what, outcome)

    def __repr__(self) -> str:
        return f"{self.description}: {self._text()}" if not self.elapsed_only else self._text()


_OUTCOME_WORDS = {
    "done": "finished",
    "error": "failed",
    "timeout": "timed out",
    "interrupted": "interrupted",
    "closed": "stopped watching",
}


class WaitSummary:
    """A finished wait, as one static line (text and HTML)."""

    def __init__(self, text: str, outcome: str) -> None:
        self.text = text
        self.outcome = outcome

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        color = "#2e7d32" if self.outcome == "done" else "#c62828"
        return f"<div class='shoal-wait' style='color:{color}'>{html.escape(self.text)}</div>"
