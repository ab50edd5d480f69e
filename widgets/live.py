"""`LiveView`: the one mechanism behind every live notebook view (cluster, tasks, progress).

A live view is drawn by the kernel's one refresher thread while it is live, and when it stops
(its work is done, the cluster shuts down, or it is closed) its output is replaced by a static
summary, HTML and text, so a saved notebook shows the last state without a widget manager.
Subclasses say what to read and how it looks; they never display or register themselves.

    display ──_ipython_display_──▶ cell output: widget view + text/html + text/plain (display id)
    shoal-widgets-refresher ──_refresh(snapshot)──▶ _poll ──▶ body HTML widget redrawn
    done / shoal.shutdown() begins / close() ──_stop──▶ update_display: text/html + text/plain
    a wait's end, in its cell ──_stop_locked(after_output)──▶ update_display: empty; display: summary

With `SHOAL_NONINTERACTIVE=1` (or `live=False`) a view reads once and displays only the static
summary; in a terminal its repr is the text summary.
"""

from __future__ import annotations

import html
import logging
import threading
import weakref

import ipywidgets

from . import final_states, refresher

logger = logging.getLogger(__name__)

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_EMPTY = {"text/plain": ""}  # a view's place once its summary went below the cell's output

_views: weakref.WeakSet = weakref.WeakSet()  # views not yet stopped, for the shutdown listener
_listening = False
_views_lock = threading.Lock()


class LiveView(ipywidgets.VBox):
    """A view kept current by the refresher thread that leaves a static summary when it stops.

    Subclasses implement `_poll` (read state; on the refresher thread), `_render_html` and
    `_render_text` (the current state; the static summary is the same drawing without the
    controls), and may override `_poll_now` (a direct read, for the first drawing),
    `_poll_final` (the last read, as shutdown begins), `_finished` (the work is done: stop),
    `_controls` (buttons shown while live) and `_on_stop`. A view whose work ends in its own
    cell (a wait's bar) stops with `_stop_locked(ended, after_output=True)`, so its summary
    follows what the cell printed meanwhile.

    Args:
        live: refresh on the refresher thread; None (default) means "unless non-interactive".
    """

    def __init__(self, live: bool | None = None, **kwargs):
        self._lock = threading.RLock()
        self._handles: list = []
        self._stopped = False
        self._ended = ""  # why the view stopped before its work was done, shown in the summary
        self._body = ipywidgets.HTML()
        super().__init__(children=[self._body, *self._controls()], **kwargs)
        self.live = refresher.live_updates_enabled() if live is None else bool(live)
        self._poll_now()
        self._draw()
        if not self.live or self._finished():
            self._stopped = True
            return
        _track(self)
        refresher.register(self)

    # ------------------------------------------------------------------ for subclasses

    def _poll(self, snapshot: dict | None) -> None:
        """Read the newest state (the refresher's event snapshot, None if none yet)."""
        raise NotImplementedError

    def _poll_now(self) -> None:
        """Read the state directly (at creation, and as shutdown begins)."""
        self._poll(None)

    def _poll_final(self) -> None:
        """The last read, as `shoal.shutdown()` begins (the cluster is still up)."""
        self._poll_now()

    def _render_html(self) -> str:
        raise NotImplementedError

    def _render_text(self) -> str:
        raise NotImplementedError

    def _finished(self) -> bool:
        """True once there is nothing left to watch; the view then stops by itself."""
        return False

    def _controls(self) -> list:
        """Widgets shown under the drawing while the view is live (none by default)."""
        return []

    def _on_stop(self) -> None:
        """The view stopped: disable controls (called under the view's lock)."""

    # ------------------------------------------------------------------ state

    @property
    def stopped(self) -> bool:
        """True once the view no longer updates (its output then holds the static summary)."""
        return self._stopped

    def static_bundle(self) -> dict:
        """The static summary: `text/html` and `text/plain` of the last state."""
        with self._lock:
            note = f"<div class='shoal-ended'>({html.escape(self._ended)})</div>" if self._ended else ""
            text_note = f"\n({self._ended})" if self._ended else ""
            return {
                "text/plain": self._render_text() + text_note,
                "text/html": f"<div class='shoal-static'>{self._render_html()}{note}</div>",
            }

    # ------------------------------------------------------------------ the refresher's side

    def _refresh(self, snapshot: dict | None) -> bool:
        with self._lock:
            if self._stopped:
                return False
            self._poll(snapshot)
            self._draw()
            if self._finished():
                self._stop_locked("")
                return False
        return True

    def _cluster_gone(self) -> None:
        self._stop("cluster shut down")

    def _shutdown_begins(self) -> None:
        """`shoal.shutdown()` is starting: take the last state while the cluster is up, then stop."""
        with self._lock:
            if self._stopped:
                return
            try:
                self._poll_final()
            except Exception:
                logger.debug("last read of a live view failed", exc_info=True)
            self._stop_locked("" if self._finished() else "cluster shut down")

    def _draw(self) -> None:
        drawing = self._render_html()
        if self._body.value != drawing:
            self._body.value = drawing

    def _stop(self, ended: str) -> None:
        with self._lock:
            self._stop_locked(ended)

    def _stop_locked(self, ended: str, after_output: bool = False) -> None:
        """Stop; the summary replaces the view, or, with `after_output`, the view's place is left
        empty and the summary is displayed anew, as the newest output of the cell running now:
        only for a view whose work ends in its own cell, on that cell's thread (a wait's bar),
        so the summary comes after what the cell printed while the view was live."""
        if self._stopped:
            return
        self._stopped = True
        self._ended = ended
        refresher.unregister(self)
        with _views_lock:
            _views.discard(self)
        self._draw()
        self._on_stop()
        bundle = self.static_bundle()
        handles, self._handles = self._handles, []
        if after_output and handles:
            from IPython.display import display

            # Sent while the view's own cell runs, so no re-send at shutdown is needed.
            for handle in handles:
                _show_summary(handle, _EMPTY)
            try:
                display(bundle, raw=True)
            except Exception:
                logger.debug("showing a live view's summary after its cell's output failed", exc_info=True)
        else:
            for handle in handles:
                _show_summary(handle, bundle)
                # A view may stop between cells: sent again as shutdown begins (final_states).
                final_states.remember(handle, bundle)
        if handles:
            # Its outputs now hold the summary: the widget has nothing left to show.
            self._close_widgets()

    # ------------------------------------------------------------------ display

    def _ipython_display_(self) -> None:
        from IPython.display import display

        with self._lock:
            if self._stopped:
                display(self.static_bundle(), raw=True)
                return
            bundle = {
                **(super()._repr_mimebundle_() or {}),
                "text/plain": self._render_text(),
                "text/html": self._render_html(),
            }
            handle = display(bundle, raw=True, display_id=True)
            if handle is not None:
                self._handles.append(handle)

    def _repr_mimebundle_(self, **kwargs) -> dict:
        with self._lock:
            if self._stopped or self.comm is None:
                return self.static_bundle()
            return {
                **(super()._repr_mimebundle_(**kwargs) or {}),
                "text/plain": self._render_text(),
                "text/html": self._render_html(),
            }

    def _repr_html_(self) -> str:
        return self._render_html()

    def __repr__(self) -> str:
        return self._render_text()

    def close(self) -> None:
        """Stop updating; a displayed view is left as its static summary. Idempotent."""
        self._stop("")
        self._close_widgets()

    def _close_widgets(self) -> None:
        pending = list(self.children)
        while pending:
            child = pending.pop()
            pending.extend(getattr(child, "children", ()))
            child.close()
        super().close()


def _track(view: LiveView) -> None:
    """Remember a live view, so the shutdown listener can give it its last state."""
    global _listening
    from shoal.util import output

    with _views_lock:
        _views.add(view)
        if not _listening:
            output.add_shutdown_listener(_shutdown_begins)
            _listening = True


def _show_summary(handle, bundle: dict) -> None:
    try:
        handle.update(bundle, raw=True)
    except Exception:
        logger.debug("replacing a live view by its summary failed", exc_info=True)


def _shutdown_begins() -> None:
    with _views_lock:
        views = list(_views)
    for view in views:
        try:
            view._shutdown_begins()
        except Exception:
            logger.debug("stopping a live view at shutdown failed", exc_info=True)


def live_views() -> list[LiveView]:
    """The views still live in this process."""
    with _views_lock:
        return list(_views)
