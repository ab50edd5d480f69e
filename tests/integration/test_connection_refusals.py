"""What a TCP driver is told when a node refuses it: a wrong token, or too many unauthenticated
connections from its host, which libzmq reports alike (handshake_watch tells them apart).

One head (`shoal start --block` on 127.0.0.1) with a long handshake deadline, so idle
connections opened by the test hold every place this host has for as long as they stay open.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tempfile
from contextlib import contextmanager

import pytest
import shoal

from tests.cluster.nodes import LocalCluster
from tests.waiting import wait_for

PER_HOST = 4


@pytest.fixture(scope="module")
def cluster():
    local = LocalCluster(
        env={
            "SHOAL_HANDSHAKE_TIMEOUT_S": "60",  # idle connections keep their places for the whole module
            "SHOAL_MAX_UNAUTHENTICATED_PER_HOST": str(PER_HOST),
        }
    )
    try:
        local.head = local.start_head({"head_only": 1})
        with open(re.search(r"token file: (\S+)", local.head.output).group(1)) as handle:
            local.token = handle.read().strip()
        shoal.init(address="auto")  # over ipc: the gate does not see it
        yield local
    finally:
        shoal.shutdown()
        local.stop()


def _refused(cluster) -> int:
    from shoal.util import state

    (row,) = [row for row in state.list_nodes() if row["state"] == "ALIVE"]
    return row["connections_refused"]


@contextmanager
def _idle_connections(cluster, count: int):
    """`count` connections to the head's port that never start the handshake; the first PER_HOST
    take this host's places, the gate shuts the others at once."""
    before = _refused(cluster)
    connections = [socket.create_connection(("127.0.0.1", cluster.head.port), timeout=5) for _ in range(count)]
    try:
        wait_for(lambda: _refused(cluster) >= before + count - PER_HOST, 30, lambda: f"refused: {_refused(cluster)}")
        yield connections
    finally:
        for connection in connections:
            connection.close()


def _driver(cluster, source: str, token: str, connect_timeout_s: float) -> subprocess.Popen:
    """A driver connecting over TCP, as from another machine (its own TMPDIR: no ipc socket to find)."""
    elsewhere = tempfile.mkdtemp(prefix="shoal-elsewhere-")
    env = dict(cluster.env, SHOAL_TOKEN=token, TMPDIR=elsewhere, SHOAL_CONNECT_TIMEOUT_S=str(connect_timeout_s))
    program = f"""
import shutil, shoal
try:
    shoal.init(address="127.0.0.1:{cluster.head.port}")
except ConnectionError as error:
    print("REFUSED:", error)
else:
{source}
    shoal.shutdown()
shutil.rmtree({elsewhere!r}, ignore_errors=True)
"""
    return subprocess.Popen(
        [sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _output(driver: subprocess.Popen) -> tuple[str, str]:
    try:
        return driver.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        driver.kill()
        return driver.communicate()


RUN_A_TASK = '    print("RAN", shoal.get(shoal.remote(lambda: 7).remote(), timeout=60))'


def test_a_driver_on_a_flooding_host_is_told_so_not_that_its_token_is_wrong(cluster):
    with _idle_connections(cluster, 2 * PER_HOST):
        stdout, stderr = _output(_driver(cluster, RUN_A_TASK, cluster.token, connect_timeout_s=4))
    assert "REFUSED:" in stdout, stdout + stderr
    assert "token is wrong" not in stdout, stdout
    assert "SHOAL_MAX_UNAUTHENTICATED_PER_HOST" in stdout and "kept refusing the connection for 4 s" in stdout, stdout


def test_a_driver_refused_while_its_host_floods_gets_in_once_the_flood_stops(cluster):
    with _idle_connections(cluster, 2 * PER_HOST):
        before = _refused(cluster)
        driver = _driver(cluster, RUN_A_TASK, cluster.token, connect_timeout_s=60)
        try:
            # Its attempts, and its probe, are turned away while the idle connections hold the places.
            wait_for(lambda: _refused(cluster) >= before + 3, 30, lambda: f"refused: {_refused(cluster)}")
            assert driver.poll() is None, driver.communicate()
        except BaseException:
            driver.kill()
            driver.wait()
            raise
    stdout, stderr = _output(driver)
    assert "RAN 7" in stdout, stdout + stderr


def test_a_wrong_token_is_still_called_a_wrong_token(cluster):
    stdout, stderr = _output(_driver(cluster, RUN_A_TASK, "not-the-token", connect_timeout_s=30))
    assert "REFUSED:" in stdout and "the token is wrong" in stdout, stdout + stderr
