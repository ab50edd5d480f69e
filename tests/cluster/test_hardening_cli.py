"""`shoal start` keeps the cluster token secret, its session files private, and cleans up after killed nodes.

One head (`shoal start --head --port`) for the module, in its own temp dir; the nodes that join it
run in another temp dir, as if on another machine, and are stopped with `shoal stop` there.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys

import psutil
import pytest

from tests.cluster.nodes import free_port
from tests.waiting import wait_for

STORE = str(64 * 1024 * 1024)
CLI = [sys.executable, "-m", "shoal.cli"]


def _cli(args: list, env: dict, stdin: str | None = None, timeout_s: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, capture_output=True, text=True, env=env, input=stdin, timeout=timeout_s)


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    env = dict(os.environ, TMPDIR=str(tmp_path_factory.mktemp("head-machine")))
    env.pop("SHOAL_TOKEN", None)
    address = f"127.0.0.1:{free_port()}"
    started = _cli(
        ["start", "--head", "--port", address.split(":")[1], "--num-cpus", "1", "--object-store-memory", STORE], env
    )
    try:
        assert started.returncode == 0, started.stderr
        token_file = re.search(r"token file: (\S+)", started.stdout).group(1)
        with open(token_file) as handle:
            token = handle.read().strip()
        session_dir = re.search(r"session: (\S+)", started.stdout).group(1)
        yield {
            "env": env,
            "address": address,
            "stdout": started.stdout,
            "token": token,
            "token_file": token_file,
            "session_dir": session_dir,
        }
    finally:
        _cli(["stop"], env)


@pytest.fixture
def other_machine(tmp_path):
    """The environment of a machine that joins: its own temp dir, no token; its nodes stopped after."""
    env = dict(os.environ, TMPDIR=str(tmp_path / "joining-machine"))
    env.pop("SHOAL_TOKEN", None)
    os.makedirs(env["TMPDIR"])
    yield env
    _cli(["stop"], env)


def _join_args(head) -> list:
    return ["start", "--address", head["address"], "--num-cpus", "1", "--object-store-memory", STORE]


def _manager_pid(output: str) -> int:
    return int(re.search(r"node manager pid (\d+)", output).group(1))


def test_head_prints_where_the_token_is_never_the_token(head):
    assert head["token"] and head["token"] not in head["stdout"]
    assert f"--token-file {head['token_file']}" in head["stdout"]
    assert f"SHOAL_TOKEN=$(cat {head['token_file']})" in head["stdout"]
    assert stat.S_IMODE(os.stat(head["token_file"]).st_mode) == 0o600


def test_token_on_the_command_line_is_refused(head, other_machine):
    refused = _cli(_join_args(head) + ["--token", head["token"]], other_machine)
    assert refused.returncode == 2
    assert "--token is not accepted" in refused.stderr and "/proc/<pid>/cmdline" in refused.stderr
    assert "Joined" not in refused.stdout


def test_token_file_others_can_read_is_refused(head, other_machine, tmp_path):
    copy = tmp_path / "token"
    copy.write_text(head["token"])
    copy.chmod(0o644)
    refused = _cli(_join_args(head) + ["--token-file", str(copy)], other_machine)
    assert refused.returncode == 2
    assert f"chmod 600 {copy}" in refused.stderr


def test_wrong_token_prints_only_the_reason(head, other_machine):
    refused = _cli(_join_args(head), dict(other_machine, SHOAL_TOKEN="not-the-token"))
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith(
        f"the shoal head at {head['address']} refused this node: the token is wrong"
    )
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_join_with_the_token_on_stdin_keeps_it_out_of_every_command_line(head, other_machine):
    joined = subprocess.Popen(
        CLI + _join_args(head) + ["--token-file", "-", "--block"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=other_machine,
    )
    try:
        joined.stdin.write(head["token"] + "\n")
        joined.stdin.close()
        from shoal._core.node_launcher import read_until

        output = read_until(joined, "Stop it with", 60)
        assert "Joined the shoal cluster" in output, output
        processes = [psutil.Process(joined.pid)]
        processes += processes[0].children(recursive=True)
        assert len(processes) >= 2  # the CLI, its node manager, the template and workers
        for process in processes:
            assert head["token"] not in " ".join(process.cmdline()), process.cmdline()
    finally:
        joined.send_signal(signal.SIGTERM)
        joined.wait(timeout=30)
        joined.stdout.close()


def test_join_with_the_token_in_the_environment_and_a_token_file(head, other_machine, tmp_path):
    by_env = _cli(_join_args(head), dict(other_machine, SHOAL_TOKEN=head["token"]))
    assert by_env.returncode == 0 and "Joined" in by_env.stdout, by_env.stderr
    copy = tmp_path / "token"
    copy.write_text(head["token"])
    copy.chmod(0o600)
    by_file = _cli(_join_args(head) + ["--token-file", str(copy)], other_machine)
    assert by_file.returncode == 0 and "Joined" in by_file.stdout, by_file.stderr
    stopped = _cli(["stop"], other_machine)
    assert stopped.stdout.count("Stopped the shoal node") == 2, stopped.stdout


def _private(path: str) -> bool:
    return stat.S_IMODE(os.lstat(path).st_mode) & 0o077 == 0


def test_session_dir_sockets_and_logs_are_private(head):
    from shoal._core.lifecycle import node_socket_path

    session_dir = head["session_dir"]
    entries = [session_dir]
    for root, dirs, files in os.walk(session_dir):
        entries += [os.path.join(root, name) for name in dirs + files]
    sockets = [node_socket_path(session_dir, name) for name in ("node", "events")]  # short paths live in /tmp
    assert all(stat.S_ISSOCK(os.lstat(path).st_mode) for path in sockets)
    assert any(path.endswith(".log") for path in entries) and os.path.join(session_dir, "token") in entries
    assert [path for path in entries + sockets if not _private(path)] == []


def test_session_of_a_killed_node_is_removed_by_the_next_command_and_a_live_one_is_kept(head, other_machine):
    env = dict(other_machine, SHOAL_TOKEN=head["token"])
    killed = _cli(_join_args(head), env)
    alive = _cli(_join_args(head), env)
    assert killed.returncode == 0 and alive.returncode == 0, killed.stderr + alive.stderr
    killed_dir = re.search(r"session: (\S+)", killed.stdout).group(1)
    alive_dir = re.search(r"session: (\S+)", alive.stdout).group(1)
    killed_pid = _manager_pid(killed.stdout)
    os.kill(killed_pid, signal.SIGKILL)
    wait_for(
        lambda: not psutil.pid_exists(killed_pid) or psutil.Process(killed_pid).status() == psutil.STATUS_ZOMBIE,
        30,
        describe=lambda: f"node manager {killed_pid} still runs",
    )
    assert os.path.isdir(killed_dir)  # nothing was left to remove it
    collected = subprocess.run(
        [sys.executable, "-c", "from shoal._core import lifecycle; print(lifecycle.collect_stale_sessions())"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert collected.returncode == 0, collected.stderr
    assert not os.path.exists(killed_dir), collected.stdout
    assert os.path.isdir(alive_dir) and os.path.isfile(os.path.join(alive_dir, "token"))
    assert _cli(["status"], env).returncode == 0  # the live node still serves
    # `shoal stop` collects too: kill the other one and let stop find its directory.
    alive_pid = _manager_pid(alive.stdout)
    os.kill(alive_pid, signal.SIGKILL)
    wait_for(
        lambda: not psutil.pid_exists(alive_pid) or psutil.Process(alive_pid).status() == psutil.STATUS_ZOMBIE,
        30,
        describe=lambda: f"node manager {alive_pid} still runs",
    )
    stopped = _cli(["stop"], env)
    assert "Removed 1 session directories" in stopped.stdout, stopped.stdout
    assert not os.path.exists(alive_dir)
    assert os.path.isdir(head["session_dir"])  # another machine's (another temp dir's) head is untouched
