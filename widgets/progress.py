"""`ProgressBar` and `track`: how many of a list of ObjectRefs are ready.

The refresher thread polls `shoal.wait(refs, num_returns=len(refs), timeout=0)`; the bar stops
being refreshed once every ref is ready. Text and HTML reprs give a static fallback.
"""

from __future__ import annotations

import html

import ipywidgets

from . import refresher


class ProgressBar(ipywidgets.HBox):
    """A progress bar over ObjectRefs: `ready/total` as a bar and a label.

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
        self._bar = ipywidgets.IntProgress(value=0, min=0, max=max(self.total, 1), description=description)
        self._label = ipywidgets.Label()
        super().__init__(children=[self._bar, self._label], **kwargs)
        self.update()
        live = refresher.live_updates_enabled() if live is None else live
        if live and not self.done:
            refresher.register(self)

    @property
    def done(self) -> bool:
        return self.ready >= self.total

    def update(self) -> int:
        """Poll the refs once (never blocks) and redraw; returns how many are ready."""
        import shoal

        if self.total and shoal.is_initialized():
            ready, _ = shoal.wait(self.refs, num_returns=self.total, timeout=0)
            self.ready = len(ready)
        self._draw()
        return self.ready

    def _draw(self) -> None:
        self._bar.value = self.ready
        self._bar.bar_style = "success" if self.done else ""
        self._label.value = f"{self.ready}/{self.total} ready"

    def _refresh(self, snapshot: dict | None) -> bool:
        self.update()
        return not self.done

    def _cluster_gone(self) -> None:
        self._label.value = f"{self.ready}/{self.total} ready (cluster shut down)"

    def close(self) -> None:
        refresher.unregister(self)
        super().close()

    def __repr__(self) -> str:
        return f"{self._bar.description}: {self.ready}/{self.total} ready"

    def _repr_html_(self) -> str:
        percent = 100.0 * self.ready / self.total if self.total else 100.0
        return (
            f"<div class='shoal-progress'>{html.escape(repr(self))}"
            f"<progress value='{self.ready}' max='{self.total}'></progress> {percent:.0f}%</div>"
        )

    def _repr_mimebundle_(self, **kwargs) -> dict:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = repr(self)
        bundle["text/html"] = self._repr_html_()
        return bundle


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
