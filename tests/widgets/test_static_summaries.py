"""A live view's cell output becomes its static summary (HTML and text, no widget) when it stops:
when its work is done, and when `shoal.shutdown()` begins, with the last state read first."""

from __future__ import annotations

import pytest
import shoal
from shoal.widgets import ClusterView, TaskView, live, refresher, track

from tests.waiting import wait_for

pytestmark = pytest.mark.integration

WIDGET = "application/vnd.jupyter.widget-view+json"


@shoal.remote
def pause(seconds):
    import time

    time.sleep(seconds)
    return seconds


class _Handle:
    """What `display(..., display_id=True)` returns: records `update` calls."""

    def __init__(self, bundle):
        self.shown = [bundle]

    def update(self, bundle, raw=False):
        assert raw
        self.shown.append(bundle)


@pytest.fixture
def displays(monkeypatch):
    """Displays go to a list of handles instead of a kernel (live updates on), as inside IPython
    (`track` displays its bar there), whether or not an earlier test made IPython's shell."""
    import IPython
    import IPython.display

    monkeypatch.delenv("SHOAL_NONINTERACTIVE", raising=False)
    handles = []

    def display(bundle, raw=False, display_id=None):
        if hasattr(bundle, "_ipython_display_"):
            return bundle._ipython_display_()
        assert raw
        handle = _Handle(bundle)
        handles.append(handle)
        return handle if display_id else None

    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    yield handles
    refresher.stop_refresher()


def test_views_become_their_last_state_when_shutdown_begins(displays):
    shoal.init(num_cpus=2)
    try:
        view, tasks = ClusterView(), TaskView()
        view._ipython_display_()
        tasks._ipython_display_()
        refs = [pause.remote(0.3) for _ in range(6)]
        bar = track(refs)  # displayed: inside IPython
        assert [WIDGET in handle.shown[0] for handle in displays] == [True, True, True]
        shoal.get(refs)
        shoal.shutdown()  # at once: the refresher may not have drawn the finished tasks yet
        for handle in displays:
            assert len(handle.shown) == 2, handle.shown
            assert set(handle.shown[-1]) == {"text/html", "text/plain"}
        cluster_text, tasks_text, bar_text = (handle.shown[-1]["text/plain"] for handle in displays)
        assert "6 finished" in cluster_text and cluster_text.endswith("(cluster shut down)")
        assert "6 recent (6 finished)" in tasks_text
        assert bar_text == "tasks: 6/6 ready"  # done: no "(cluster shut down)" note
        assert "<b>6</b> finished" in displays[0].shown[-1]["text/html"]
        assert view.stopped and tasks.stopped and bar.stopped
        assert live.live_views() == []
        assert view.comm is None  # the widget closed: its output holds the summary
    finally:
        shoal.shutdown()


def test_a_finished_bar_replaces_itself_while_the_cluster_runs(displays):
    shoal.init(num_cpus=2)
    try:
        refs = [pause.remote(0.2) for _ in range(2)]
        track(refs)
        (handle,) = displays
        wait_for(lambda: len(handle.shown) == 2, 10, describe=lambda: repr(handle.shown))
        summary = handle.shown[-1]
        assert summary["text/plain"] == "tasks: 2/2 ready"
        assert WIDGET not in summary
        assert shoal.is_initialized()
        # Replaced between cells: sent again as shutdown begins (for nbclient, which heard only
        # the cell that ran then).
        shoal.shutdown()
        assert handle.shown[2:] == [summary]
    finally:
        shoal.shutdown()


def test_non_interactive_views_display_only_their_summary(monkeypatch):
    import IPython.display

    monkeypatch.setenv("SHOAL_NONINTERACTIVE", "1")
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda bundle, raw=False, display_id=None: shown.append(bundle))
    view = ClusterView()
    view._ipython_display_()
    assert shown == [view.static_bundle()]
    assert "not running" in shown[0]["text/plain"]
    assert refresher.current_thread() is None
    view.close()
