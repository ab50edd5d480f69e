"""The ClusterView shut-down button: it asks first; the confirming click only queues, and the
refresher thread shuts down."""

from __future__ import annotations

import threading

import pytest
import shoal
from shoal.widgets import ClusterView, refresher, stop_refresher

from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def test_shutdown_button_hands_work_to_the_refresher(monkeypatch):
    monkeypatch.delenv("SHOAL_NONINTERACTIVE", raising=False)
    shoal.init(num_cpus=2)
    try:
        view = ClusterView()
        shutdown_threads = []
        real_shutdown = shoal.shutdown

        def recording_shutdown(*args, **kwargs):
            shutdown_threads.append(threading.current_thread().name)
            return real_shutdown(*args, **kwargs)

        monkeypatch.setattr(shoal, "shutdown", recording_shutdown)
        view.shutdown_button.click()  # what the comm callback does: only asks
        assert view.shutdown_button.disabled and view.confirmation.layout.display == "flex"
        view.cancel_button.click()
        assert view.confirmation.layout.display == "none" and not view.shutdown_button.disabled
        view.shutdown_button.click()
        assert shoal.is_initialized() and shutdown_threads == []  # asking queues nothing
        view.confirm_button.click()
        wait_for(lambda: not shoal.is_initialized(), 10)
        assert shutdown_threads == [refresher.THREAD_NAME]
        wait_for(lambda: refresher.current_thread() is None, 5)
        view.close()
    finally:
        stop_refresher()
        shoal.shutdown()


def _where(thread) -> str:
    import sys
    import traceback

    frame = sys._current_frames().get(thread.ident)
    stack = "".join(traceback.format_stack(frame)) if frame is not None else "(not running)"
    return f"initialized={shoal.is_initialized()}\n{stack}"


def test_shutdown_from_the_notebook_freezes_live_widgets(monkeypatch):
    monkeypatch.delenv("SHOAL_NONINTERACTIVE", raising=False)
    shoal.init(num_cpus=2)
    try:
        view = ClusterView()
        thread = refresher.current_thread()
        wait_for(lambda: view.summary.connected and view.summary.num_workers >= 0, 2)
        wait_for(lambda: refresher.current_thread() is not None, 2)
        shoal.shutdown()
        wait_for(lambda: not thread.is_alive(), 5, describe=lambda: _where(thread))  # nothing to watch: exits
        assert view.stopped and view.summary.connected  # the last state, kept
        assert view._repr_mimebundle_()["text/plain"].endswith("(cluster shut down)")
        view.close()
    finally:
        stop_refresher()
        shoal.shutdown()
