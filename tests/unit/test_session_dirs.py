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


def _crashed(session_root, name: str, age_days: float) -> str:
    path = session_root / lifecycle.CRASHED_DIR / name
    path.mkdir(parents=True)
    (path / "node_manager.log").write_text("the last words\n")
    at = os.path.getmtime(path) - age_days * 86400
    os.utime(path, (at, at))
    return str(path)


def test_crash_logs_beyond_the_newest_few_or_too_old_are_pruned_with_the_stale_sessions(session_root, monkeypatch):
    monkeypatch.setenv("SHOAL_CRASH_LOGS_KEEP", "3")
    monkeypatch.setenv("SHOAL_CRASH_LOGS_MAX_AGE_DAYS", "7")
    recent = [_crashed(session_root, f"session_recent_{index}", age_days=index) for index in range(5)]
    ancient = _crashed(session_root, "session_ancient", age_days=30)
    assert sorted(lifecycle.collect_stale_sessions()) == []  # it returns the sessions it removed
    left = sorted(os.listdir(session_root / lifecycle.CRASHED_DIR))
    assert left == [os.path.basename(path) for path in recent[:3]]  # the newest three, all younger than 7 days
    assert not os.path.exists(ancient)
    monkeypatch.setenv("SHOAL_CRASH_LOGS_KEEP", "10")
    monkeypatch.setenv("SHOAL_CRASH_LOGS_MAX_AGE_DAYS", "1.5")
    lifecycle.collect_stale_sessions()
    assert sorted(os.listdir(session_root / lifecycle.CRASHED_DIR)) == [os.path.basename(p) for p in recent[:2]]


def test_pruning_leaves_what_is_not_a_crash_log_alone(session_root, monkeypatch, tmp_path):
    monkeypatch.setenv("SHOAL_CRASH_LOGS_KEEP", "0")
    crashed = session_root / lifecycle.CRASHED_DIR
    pruned = _crashed(session_root, "session_old", age_days=0)
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "data").write_text("keep me")
    (crashed / "session_link").symlink_to(elsewhere)  # a link named like a session: not followed, not removed
    (crashed / "session_file").write_text("not a directory")
    (crashed / "notes").mkdir()  # not named like a session
    assert lifecycle.prune_crash_logs() == [pruned]
    assert sorted(os.listdir(crashed)) == ["notes", "session_file", "session_link"]
    assert (elsewhere / "data").read_text() == "keep me"


def test_kept_logs_are_dated_by_the_crash_so_the_newest_survive_pruning(session_root, monkeypatch):
    monkeypatch.setenv("SHOAL_CRASH_LOGS_KEEP", "1")
    older = _crashed(session_root, "session_z_crashed_earlier", age_days=0.5)
    session = lifecycle.new_session_dir()
    logs = os.path.join(session, "logs")
    with open(os.path.join(logs, "node_manager.log"), "w") as handle:
        handle.write("written long before the crash\n")
    written_at = os.path.getmtime(logs) - 3 * 86400
    os.utime(logs, (written_at, written_at))
    kept = lifecycle.keep_logs(session)
    assert kept == lifecycle.crash_logs_dir(session)
    lifecycle.remove_session_dir(session)
    assert lifecycle.prune_crash_logs() == [older]
    assert os.path.isfile(os.path.join(kept, "node_manager.log"))
