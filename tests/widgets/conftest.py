"""Fixtures for widget tests: a module-scoped 2-CPU cluster and widgets that close themselves.

Teardown stops the refresher thread before shutting the cluster down, so no `shoal-*` thread
outlives the module.
"""

from __future__ import annotations

import pytest
import shoal


@pytest.fixture(scope="module")
def cluster():
    """A 2-CPU local cluster for the module; the refresher is stopped before it shuts down."""
    from shoal.widgets import stop_refresher

    context = shoal.init(num_cpus=2)
    try:
        yield context
    finally:
        stop_refresher()
        shoal.shutdown()


@pytest.fixture
def closing():
    """Collects widgets (`closing(widget)` returns it) and closes them after the test."""
    from shoal.widgets import stop_refresher

    opened = []

    def keep(widget):
        opened.append(widget)
        return widget

    yield keep
    for widget in reversed(opened):
        widget.close()
    stop_refresher()


@pytest.fixture
def live(monkeypatch):
    """Live updates on for this test (the suite runs with SHOAL_NONINTERACTIVE=1)."""
    monkeypatch.delenv("SHOAL_NONINTERACTIVE", raising=False)
