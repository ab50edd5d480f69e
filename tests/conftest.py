"""Suite-wide guards: the run is non-interactive and isolated, and every module cleans up.

- `_test_run_environment` (session, autouse): `SHOAL_NONINTERACTIVE=1`; a private TMPDIR, so the
  session directories this run creates are its own and never confused with another run's on the
  same machine; and a run id in the environment that every process the run starts inherits.
- `_module_leak_check` (module, autouse): set up before every other module fixture, so it is
  torn down after them all; then it fails the module if anything is left behind: a cluster still
  initialized, a process, a `shoal-*` thread, a `/dev/shm/shoal*` entry or a session directory
  (see tests/leaks.py).

Cluster fixtures are therefore module-scoped or narrower: a session-scoped cluster would outlive
every module and be reported as a leak. Wait with `tests.waiting.wait_for`, never sleep-then-assert.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from tests import leaks

LEAK_TIMEOUT_S = 10.0


@pytest.fixture(scope="session", autouse=True)
def _test_run_environment():
    private_tmp = tempfile.mkdtemp(prefix="shoal-test-")
    settings = {"SHOAL_NONINTERACTIVE": "1", "TMPDIR": private_tmp, leaks.RUN_ID_ENV: leaks.new_run_id()}
    saved_environ = {name: os.environ.get(name) for name in settings}
    saved_tempdir = tempfile.tempdir
    os.environ.update(settings)
    tempfile.tempdir = None  # recomputed from TMPDIR on next use
    try:
        yield
    finally:
        for name, value in saved_environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        tempfile.tempdir = saved_tempdir
        shutil.rmtree(private_tmp, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def _module_leak_check(_test_run_environment):
    before = leaks.take_snapshot()
    yield
    problems = leaks.check_nothing_left(before, os.environ[leaks.RUN_ID_ENV], LEAK_TIMEOUT_S)
    if problems:
        pytest.fail("test module left resources behind:\n" + "\n".join(problems), pytrace=False)
