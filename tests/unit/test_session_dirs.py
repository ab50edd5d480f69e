"""Unit tests for session directories: owner-only modes, and which are stale (their process is gone)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from shoal._core import lifecycle


@pytest.fixture
def session_root(tmp_path, monkeypatch):
    monkeypatch.setattr(lifecycle.config, "temp_root", lambda: str(tmp_path / "shoal-root"))
    return tmp_path / "shoal-root"


def _exited_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _owner(path) -> dict:
    with open(os.path.join(path, lifecycle.SESSION_OWNER_FILE)) as handle:
        return json.load(handle)


def _rewrite_owner(path, **changes) -> None:
    recorded = dict(_owner(path), **changes)
    with open(os.path.join(path, lifecycle.SESSION_OWNER_FILE), "w") as handle:
        json.dump(recorded, handle)


def test_new_session_dir_is_owner_only_and_recorded_as_this_process(session_root):
    old_umask = os.umask(0o022)
    try:
        path = lifecycle.new_session_dir()
    finally:
        os.umask(old_umask)
    for directory in (path, os.path.join(path, "logs")):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(path, lifecycle.SESSION_OWNER_FILE)).st_mode) == 0o600
    assert _owner(path)["pid"] == os.getpid()
    assert not lifecycle.session_is_stale(path)


def test_session_of_a_process_that_exited_is_stale_and_collected(session_root):
    live = lifecycle.new_session_dir()
    gone = lifecycle.new_session_dir()
    _rewrite_owner(gone, pid=_exited_pid())
    assert lifecycle.session_is_stale(gone)
    assert lifecycle.collect_stale_sessions() == [gone]
    assert not os.path.exists(gone) and os.path.isdir(live)


def test_reused_pid_is_stale_but_unknown_owners_are_never_judged(session_root):
    reused = lifecycle.new_session_dir()
    _rewrite_owner(reused, start_ticks=_owner(reused)["start_ticks"] - 1)  # same pid, another process
    assert lifecycle.session_is_stale(reused)
    unrecorded = lifecycle.new_session_dir()
    os.unlink(os.path.join(unrecorded, lifecycle.SESSION_OWNER_FILE))  # being created, or an older shoal
    assert not lifecycle.session_is_stale(unrecorded)
    other_namespace = lifecycle.new_session_dir()
    _rewrite_owner(other_namespace, pid=_exited_pid(), pid_namespace="pid:[1]")  # another container's pid
    assert not lifecycle.session_is_stale(other_namespace)
    rebooted = lifecycle.new_session_dir()
    _rewrite_owner(rebooted, boot_id="an-earlier-boot")
    assert lifecycle.session_is_stale(rebooted)


def test_pid_alive_is_false_for_a_zombie():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
        assert not lifecycle.pid_alive(child.pid)
    finally:
        child.wait()
    assert lifecycle.pid_alive(os.getpid())
