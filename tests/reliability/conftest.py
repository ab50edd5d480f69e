"""The reliability tier: fixtures that size the scenarios and record what each one measured.

- `chaos_scale`: the `ChaosScale` that `SHOAL_CHAOS_SCALE` names (tests/reliability/scale.py).
- `figures`: a `Figures` for the test to fill; at teardown it gets the test's time and outcome
  and joins the run's list, which the terminal summary prints as a table and, with
  `SHOAL_CHAOS_REPORT=<path>` (as `make chaos` sets it), is written there as JSON.

The suite-wide leak check (tests/conftest.py) still guards every module here.
"""

from __future__ import annotations

import os
import shlex
import time

import pytest
import shoal

from tests.reliability import faults, fuzzing
from tests.reliability import figures as figures_module
from tests.reliability import scale as scale_module

_ALL_FIGURES = pytest.StashKey[list]()
_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.fixture(scope="session")
def chaos_scale() -> scale_module.ChaosScale:
    return scale_module.current()


@pytest.fixture
def figures(request, chaos_scale):
    record = figures_module.Figures(scenario=request.node.name.removeprefix("test_"))
    started = time.monotonic()
    yield record
    record.seconds = round(time.monotonic() - started, 2)
    report = request.node.stash.get(_CALL_REPORT, None)
    if report is None or report.skipped:
        record.outcome = "skipped" if report is not None else "not run"
    elif report.passed:
        record.outcome = "passed"
    else:
        text = str(report.longrepr.reprcrash.message) if hasattr(report.longrepr, "reprcrash") else str(report.longrepr)
        record.outcome = "failed: " + (text.strip().splitlines() or ["?"])[0]
    request.config.stash.setdefault(_ALL_FIGURES, []).append(record)


@pytest.fixture
def node_pid():
    """A 2-CPU embedded cluster for one kill scenario; yields its node manager's pid."""
    shoal.init(num_cpus=2)
    try:
        yield faults.embedded_node_pid()
    finally:
        shoal.shutdown()


@pytest.fixture
def target():
    """A node with every port open for the fuzz and flood scenarios (fuzzing.FuzzTarget)."""
    node = fuzzing.FuzzTarget()
    try:
        yield node
    finally:
        shoal.shutdown()
        node.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_CALL_REPORT] = report


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    recorded = config.stash.get(_ALL_FIGURES, [])
    if not recorded:
        return
    terminalreporter.section(f"reliability figures ({scale_module.current().name} scale)")
    terminalreporter.write_line(figures_module.markdown_table(recorded))
    path = os.environ.get(figures_module.REPORT_ENV)
    if path:
        terminalreporter.write_line(f"written to {path}")


def pytest_sessionfinish(session, exitstatus):
    recorded = session.config.stash.get(_ALL_FIGURES, [])
    path = os.environ.get(figures_module.REPORT_ENV)
    if recorded and path:
        command = shlex.join(["pytest", *session.config.invocation_params.args])
        figures_module.write_report(path, command, scale_module.current().as_dict(), recorded)
