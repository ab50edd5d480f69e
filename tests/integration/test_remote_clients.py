"""Drivers connecting over TCP: token authentication (CURVE), objects sent inline, bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

PORT = 16390


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tcp-head")
    env = dict(os.environ, TMPDIR=str(tmp))
    cli = [sys.executable, "-m", "shoal.cli"]
    started = subprocess.run(
        cli + ["start", "--head", "--port", str(PORT), "--num-cpus", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    token_file = next(
        line.split(":", 1)[1].split()[0]
        for line in started.stdout.splitlines()
        if line.strip().startswith("token file:")
    )
    with open(token_file) as handle:
        token = handle.read().strip()
    yield {"env": env, "token": token, "stdout": started.stdout}
    subprocess.run(cli + ["stop"], capture_output=True, env=env, timeout=60)


def _driver(head, source: str, token: str | None, timeout_s: float = 60, home_env: bool = False):
    env = dict(os.environ) if not home_env else dict(head["env"])
    env.pop("SHOAL_TOKEN", None)
    if token is not None:
        env["SHOAL_TOKEN"] = token
    return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, env=env, timeout=timeout_s)


def test_head_prints_address_and_token_file(head):
    assert f"127.0.0.1:{PORT}" in head["stdout"] and len(head["token"]) >= 32
    assert "SHOAL_TOKEN=$(cat " in head["stdout"]
    assert head["token"] not in head["stdout"]  # the secret itself is never printed


def test_remote_driver_with_token(head):
    result = _driver(
        head,
        f"""
import numpy as np, shoal
shoal.init(address="127.0.0.1:{PORT}")
double = shoal.remote(lambda x: 2 * x)
assert shoal.get(double.remote(21)) == 42
array = np.arange(3_000_000)
ref = shoal.put(array)  # larger than the inline limit: sent whole over TCP
total = shoal.remote(lambda values: int(values.sum()))
assert shoal.get(total.remote(ref)) == int(array.sum())
assert (shoal.get(ref) == array).all()
make = shoal.remote(lambda: np.ones(2_000_000))
out = shoal.get(make.remote())
assert out.shape == (2_000_000,) and not out.flags.writeable
@shoal.remote
class Counter:
    def __init__(self): self.n = 0
    def inc(self): self.n += 1; return self.n
counter = Counter.remote()
assert shoal.get([counter.inc.remote() for _ in range(3)]) == [1, 2, 3]
print("remote ok")
shoal.shutdown()
""",
        head["token"],
    )
    assert result.returncode == 0, result.stderr
    assert "remote ok" in result.stdout


def test_remote_driver_job_id_and_resources_reach_its_tasks_and_actors(head):
    result = _driver(
        head,
        f"""
import json, shoal
from shoal.util.state import list_jobs, list_tasks
shoal.init(address="127.0.0.1:{PORT}")
def context():
    ctx = shoal.get_runtime_context()
    return ctx.get_job_id(), ctx.get_task_id(), ctx.get_assigned_resources()
task = shoal.remote(context)
@shoal.remote
def outer():
    return context(), shoal.get(task.remote())
@shoal.remote(num_cpus=1)
class Holder:
    def __init__(self): self.created = context()
    def report(self): return self.created, context()
holder = Holder.remote()
print(json.dumps({{
    "driver": shoal.get_runtime_context().get_job_id(),
    "task": shoal.get(task.remote()),
    "nested": shoal.get(outer.remote()),
    "actor": shoal.get(holder.report.remote()),
    "jobs": [job.job_id for job in list_jobs() if job.status == "RUNNING"],
    "task_jobs": {{row.task_id: row.job_id for row in list_tasks(limit=10_000)}},
}}))
shoal.shutdown()
""",
        head["token"],
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    job_id = seen["driver"]
    assert len(job_id) == 8 and job_id in seen["jobs"]
    contexts = [seen["task"], *seen["nested"], *seen["actor"]]
    assert [job for job, _, _ in contexts] == [job_id] * 5
    assert [resources for _, _, resources in contexts] == [{"CPU": 1.0}] * 5
    task_ids = [task_id for _, task_id, _ in contexts[:3]]
    assert [seen["task_jobs"][task_id] for task_id in task_ids] == [job_id] * 3


def test_wrong_or_missing_token_is_refused_quickly(head):
    started = time.monotonic()
    wrong = _driver(
        head,
        f"""
import shoal
try:
    shoal.init(address="127.0.0.1:{PORT}")
except ConnectionError as error:
    print("refused:", error)
""",
        "not-the-token",
    )
    assert "refused:" in wrong.stdout and "token" in wrong.stdout, wrong.stderr
    assert time.monotonic() - started < 20
    missing = _driver(
        head,
        f"""
import shoal
try:
    shoal.init(address="127.0.0.1:{PORT}")
except ConnectionError as error:
    print("refused:", error)
""",
        None,
    )
    assert "SHOAL_TOKEN" in missing.stdout, missing.stderr


def test_same_machine_finds_the_token(head):
    result = _driver(
        head,
        f"""
import shoal
shoal.init(address="127.0.0.1:{PORT}")
print(shoal.get(shoal.remote(lambda: "found").remote()))
shoal.shutdown()
""",
        None,
        home_env=True,
    )
    assert result.stdout.strip() == "found", result.stderr


def test_random_bytes_to_the_port_do_not_hurt(head):
    for payload in (b"\x00" * 64, os.urandom(4096), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\xff" * 10 + b"\x7f"):
        with socket.create_connection(("127.0.0.1", PORT), timeout=5) as connection:
            try:
                connection.sendall(payload)
                connection.settimeout(0.5)
                connection.recv(1024)
            except OSError:
                pass
    result = _driver(
        head,
        f"""
import shoal
shoal.init(address="127.0.0.1:{PORT}")
print(shoal.get(shoal.remote(lambda: "still serving").remote()))
shoal.shutdown()
""",
        head["token"],
    )
    assert result.stdout.strip() == "still serving", result.stderr


def test_tcp_listener_binds_loopback_by_default(head):
    import psutil

    listening = [c for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == PORT]
    assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)
