"""Cluster lifecycle: init/shutdown, re-init rules, no leftovers after any kind of driver exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import psutil
import pytest
import shoal

from tests.waiting import wait_for

REPORT_PIDS = """
import json, os, sys, psutil, shoal
ctx = shoal.init(num_cpus=2)

@shoal.remote
def pid():
    return os.getpid()

shoal.get([pid.remote() for _ in range(4)])
family = [p.pid for p in psutil.Process().children(recursive=True)]
print(json.dumps({"pids": family, "session_dir": ctx["session_dir"]}), flush=True)
"""


def _gone(pids) -> bool:
    return not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)


def _run_and_check(run_script, tail: str, expect_code=None):
    result = run_script(REPORT_PIDS + tail, check=False)
    info = json.loads(result.stdout.strip().splitlines()[0])
    assert len(info["pids"]) >= 4  # node manager, template, two workers
    if expect_code is not None:
        assert result.returncode == expect_code, result.stderr
    wait_for(lambda: _gone(info["pids"]), 10, describe=lambda: [p for p in info["pids"] if psutil.pid_exists(p)])
    wait_for(lambda: not os.path.exists(info["session_dir"]), 10, describe=lambda: info["session_dir"])


def test_exit_without_shutdown_cleans_up(run_script):
    _run_and_check(run_script, "", expect_code=0)


def test_exit_by_exception_cleans_up(run_script):
    _run_and_check(run_script, "raise RuntimeError('driver failed')\n", expect_code=1)


def test_driver_killed_with_sigkill_cleans_up(run_script):
    _run_and_check(run_script, "os.kill(os.getpid(), 9)\n", expect_code=-9)


def test_init_shutdown_cycles():
    for _ in range(3):
        shoal.init(num_cpus=1)
        assert shoal.is_initialized()

        @shoal.remote
        def one():
            return 1

        assert shoal.get(one.remote()) == 1
        shoal.shutdown()
        assert not shoal.is_initialized()
    shoal.shutdown()  # idempotent


def test_a_ref_from_a_shut_down_cluster_fails_at_once_and_starts_nothing():
    shoal.init(num_cpus=1)
    put_ref = shoal.put("kept")
    task_ref = shoal.remote(lambda: 1).remote()
    shoal.get(task_ref)
    shoal.shutdown()
    for ref in (put_ref, task_ref):
        with pytest.raises(shoal.exceptions.OwnerDiedError, match="belongs to a cluster that was shut down"):
            shoal.get(ref, timeout=30)
        with pytest.raises(shoal.exceptions.ObjectLostError, match="was shut down"):
            shoal.wait([ref], timeout=30)
    assert not shoal.is_initialized()  # no cluster was started for a dead ref
    shoal.init(num_cpus=1)  # and a later init with other arguments is free to start one
    try:
        with pytest.raises(shoal.exceptions.OwnerDiedError, match="was shut down"):
            shoal.get(put_ref, timeout=30)  # a ref from the previous session, after a fresh init
        echo = shoal.remote(lambda value: value)
        with pytest.raises(shoal.exceptions.OwnerDiedError, match="was shut down"):
            echo.remote(put_ref)  # as a task's argument it would wait for ever: refused at the call
        with pytest.raises(shoal.exceptions.OwnerDiedError, match="was shut down"):
            echo.remote(value=task_ref)
        assert shoal.get(shoal.put(2)) == 2
    finally:
        shoal.shutdown()


def test_reinit_same_arguments_returns_context_and_different_raises():
    first = shoal.init(num_cpus=1)
    try:
        again = shoal.init(num_cpus=1)
        assert again["session_dir"] == first["session_dir"]
        with pytest.raises(RuntimeError, match=r"shoal\.shutdown\(\)"):
            shoal.init(num_cpus=2)
        kept = shoal.init(num_cpus=2, ignore_reinit_error=True)
        assert kept["session_dir"] == first["session_dir"]
    finally:
        shoal.shutdown()


def test_remote_before_init_starts_a_cluster():
    @shoal.remote
    def two():
        return 2

    try:
        assert shoal.get(two.remote()) == 2
        assert shoal.is_initialized()
    finally:
        shoal.shutdown()


def test_init_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_cpus"):
        shoal.init(num_cpus=-1)
    with pytest.raises(TypeError, match="num_cpus"):
        shoal.init(num_cpus="two")
    with pytest.raises(TypeError, match="unexpected"):
        shoal.init(not_an_option=1)
    with pytest.raises(ValueError, match="num_cpus"):
        shoal.init(resources={"CPU": 2})
    with pytest.raises(ValueError, match="runtime_env"):
        shoal.init(runtime_env={"nonsense": 1})
    assert not shoal.is_initialized()


def test_address_auto_without_cluster_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    try:
        with pytest.raises(ConnectionError, match="shoal start"):
            shoal.init(address="auto")
    finally:
        tempfile.tempdir = None


def test_init_runtime_env_applies_to_workers():
    shoal.init(num_cpus=1, runtime_env={"env_vars": {"SHOAL_CLUSTER_VAR": "cluster-wide"}})
    try:

        @shoal.remote
        def read():
            return os.environ.get("SHOAL_CLUSTER_VAR")

        assert shoal.get(read.remote()) == "cluster-wide"
    finally:
        shoal.shutdown()


def test_worker_output_is_forwarded_with_prefix(run_script):
    result = run_script(
        """
        import shoal
        shoal.init(num_cpus=1)

        @shoal.remote
        def talk():
            print("hello from the worker")
            import sys
            print("warning line", file=sys.stderr)
            return 1

        shoal.get(talk.remote())
        shoal.shutdown()
        """
    )
    assert "(talk pid=" in result.stdout and "hello from the worker" in result.stdout
    assert "(talk pid=" in result.stderr and "warning line" in result.stderr


def test_a_partial_line_of_worker_output_shows_before_the_task_ends(tmp_path):
    """A script in a terminal: text printed without a newline appears after a short delay, while
    the task still runs, and the rest of its line follows without a second prefix."""
    go = tmp_path / "go"
    script = tmp_path / "partial.py"
    script.write_text(
        "import os, time\n"
        "import shoal\n"
        "shoal.init(num_cpus=1)\n"
        "@shoal.remote\n"
        "def slow(go):\n"
        "    print('working', end='', flush=True)\n"
        "    while not os.path.exists(go):\n"
        "        time.sleep(0.02)\n"
        "    print(' done')\n"
        "shoal.get(slow.remote(" + repr(str(go)) + "))\n"
        "shoal.shutdown()\n"
    )
    errors = tmp_path / "stderr.txt"
    with errors.open("wb") as stderr:
        driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=stderr, cwd=tmp_path)
    assert driver.stdout is not None
    seen: list[bytes] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: os.read(driver.stdout.fileno(), 4096), b"")))
    reader.start()
    try:
        wait_for(lambda: b"working" in b"".join(seen), 60, describe=lambda: repr(b"".join(seen)))
        shown = b"".join(seen).decode()
        assert shown.startswith("(slow pid=") and shown.endswith(") working"), shown
        assert driver.poll() is None and not go.exists(), "shown while the task runs"
        go.touch()
        assert driver.wait(60) == 0, errors.read_text()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
        reader.join(10)
        driver.stdout.close()
    out = b"".join(seen).decode()
    assert out.count("(slow pid=") == 1 and out.endswith(") working done\n"), out


def test_log_to_driver_false_silences_workers(run_script):
    result = run_script(
        """
        import shoal
        shoal.init(num_cpus=1, log_to_driver=False)

        @shoal.remote
        def talk():
            print("should not appear")

        shoal.get(talk.remote())
        shoal.shutdown()
        """
    )
    assert "should not appear" not in result.stdout


def test_cli_start_status_stop(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    shoal_cli = [sys.executable, "-m", "shoal.cli"]
    started = subprocess.run(
        shoal_cli + ["start", "--head", "--num-cpus", "1"], capture_output=True, text=True, env=env, timeout=60
    )
    assert started.returncode == 0, started.stderr
    assert "shoal.init(address='auto')" in started.stdout
    try:
        status = subprocess.run(shoal_cli + ["status"], capture_output=True, text=True, env=env, timeout=60)
        assert status.returncode == 0, status.stderr
        assert "CPU: 0 / 1" in status.stdout
        driver = subprocess.run(
            [
                sys.executable,
                "-c",
                "import shoal; shoal.init(address='auto');f = shoal.remote(lambda: 7); print(shoal.get(f.remote()))",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert driver.stdout.strip() == "7", driver.stderr
    finally:
        stopped = subprocess.run(shoal_cli + ["stop"], capture_output=True, text=True, env=env, timeout=60)
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout
    again = subprocess.run(shoal_cli + ["status"], capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 1 and "shoal start" in again.stderr


def test_cli_start_block_stops_on_sigterm(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    process = subprocess.Popen(
        [sys.executable, "-m", "shoal.cli", "start", "--num-cpus", "1", "--block"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = process.stdout.readline()
        assert "Started a shoal head node" in line
        family = [p.pid for p in psutil.Process(process.pid).children(recursive=True)]
        assert family
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        wait_for(lambda: _gone(family), 10, describe=lambda: family)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_interrupt_while_waiting_cancels_the_awaited_tasks(run_script):
    result = run_script(
        """
        import os, signal, threading, time
        import shoal
        from shoal import exceptions

        shoal.init(num_cpus=1)

        @shoal.remote
        def sleeper():
            time.sleep(60)

        ref = sleeper.remote()
        threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        started = time.monotonic()
        try:
            shoal.get(ref)
        except KeyboardInterrupt:
            print("interrupted after %.1f s" % (time.monotonic() - started))
        try:
            shoal.get(ref, timeout=10)
        except exceptions.TaskCancelledError:
            print("task cancelled")
        shoal.shutdown()
        """
    )
    assert "interrupted after" in result.stdout and "task cancelled" in result.stdout, result.stdout + result.stderr
    assert "shoal: interrupted; cancelled 1 task still running or queued.\n" in result.stderr, result.stderr


def test_output_hooks_route_worker_output(run_script):
    result = run_script(
        """
        import time
        import shoal
        from shoal.util import output

        shoal.init(num_cpus=1)
        submitted, records = [], []
        output.add_submit_listener(submitted.append)
        output.set_log_handler(records.extend)

        @shoal.remote
        def talk():
            print("routed line")

        ref = talk.remote()
        shoal.get(ref)
        deadline = time.monotonic() + 5
        while not any("routed line" in r["text"] for r in records) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert submitted == [ref.task_id().hex()], submitted
        assert any(r["task_id"] == ref.task_id().hex() and "routed line" in r["text"] for r in records), records
        output.remove_submit_listener(submitted.append)
        output.set_log_handler(None)
        print("hooks ok")
        shoal.shutdown()
        """
    )
    assert "hooks ok" in result.stdout
    assert "routed line" not in result.stdout  # the handler took it instead of the driver printing it
