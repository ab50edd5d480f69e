"""Strangers and garbage at every port of a two-node cluster: nothing they send stops a node.

The cluster is two `shoal start --block` nodes on 127.0.0.1 (head and one worker node) with a
short handshake deadline and small limits on unauthenticated connections. The tests send what a
fault and fuzz campaign once used to kill node managers: typed garbage on the ipc socket, on the
CURVE port (as an authenticated client and as a peer) and on the data port; a huge frame before
the handshake; a flood of half-open connections. After each, both nodes still run tasks, and the
state API counts what they dropped. Last, a node manager that dies keeps its logs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import msgpack
import psutil
import pytest
import shoal
import zmq
from shoal._core import auth, lifecycle

from tests import message_fuzz
from tests.cluster.nodes import LocalCluster
from tests.waiting import wait_for

HANDSHAKE_TIMEOUT_S = 2.0
PER_HOST = 8
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


@pytest.fixture(scope="module")
def cluster():
    local = LocalCluster(
        env={
            "SHOAL_HANDSHAKE_TIMEOUT_S": str(HANDSHAKE_TIMEOUT_S),
            "SHOAL_MAX_UNAUTHENTICATED_PER_HOST": str(PER_HOST),
            "SHOAL_MAX_UNAUTHENTICATED_CONNECTIONS": str(4 * PER_HOST),
            "SHOAL_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
        }
    )
    try:
        local.head = local.start_head({"head_only": 1})
        local.worker = local.add_node({"node_a": 1})
        token_file = re.search(r"token file: (\S+)", local.head.output)
        assert token_file, local.head.output
        with open(token_file.group(1)) as handle:
            local.token = handle.read().strip()
        shoal.init(address="auto")
        yield local
    finally:
        shoal.shutdown()
        local.stop()


@shoal.remote(num_cpus=0)
def pid_here():
    return os.getpid()


def _serves_tasks(cluster) -> None:
    """Both nodes still run tasks, and their node managers are the ones we started."""
    for node, resource in ((cluster.head, "head_only"), (cluster.worker, "node_a")):
        assert psutil.pid_exists(node.manager_pid) and node.alive, node.output
        assert shoal.get(pid_here.options(resources={resource: 0.1}).remote(), timeout=60) > 0


def _session_dir(node) -> str:
    return re.search(r"session: (\S+)", node.output).group(1)


def _data_port(node) -> int:
    listening = {c.laddr.port for c in psutil.Process(node.manager_pid).net_connections("tcp") if c.status == "LISTEN"}
    (port,) = listening - {node.port}
    return port


def _faults(node) -> dict:
    """The node's row of `list_nodes()`: its counters of dropped messages, errors, refusals."""
    from shoal.util import state

    is_head = "head_only" in node.resources
    (row,) = [row for row in state.list_nodes() if row["state"] == "ALIVE" and row["is_head_node"] == is_head]
    return row


def _wait_dropped(node, at_least: int) -> None:
    wait_for(
        lambda: _faults(node)["messages_dropped"] >= at_least,
        60,
        lambda: f"counters: {_faults(node)}, wanted {at_least} dropped",
    )


def _dealer(context, endpoint: str, identity: bytes, token: str | None = None):
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 30_000)
    dealer.setsockopt(zmq.SNDHWM, 0)
    dealer.setsockopt(zmq.IDENTITY, identity)
    if token is not None:
        auth.secure_client(dealer, token)
    dealer.connect(endpoint)
    return dealer


def _identity(size: int) -> bytes:
    return b"z" + os.urandom(size - 1)  # routing ids must not start with a zero byte


def _send_each(dealer, frames: list) -> None:
    for frame in frames:
        dealer.send(frame)
    dealer.close()  # lingers until everything is sent


# -- the data port: requests from anyone ------------------------------------------------------

ISSUE_PAYLOADS = [
    [77, b"x" * 20, 0, 10, 12345],
    [77, b"x" * 20, 0, 10, "mac"],
    [77, b"x" * 20, 0, 10, [1, 2]],
    [77, b"x" * 20, 0, 10, {"mac": 1}],
    [77, 12345, 0, 10, b"m" * 32],
    [77, b"x" * 20, "0", 10, b"m" * 32],
    [77, b"x" * 20, 0, "10", b"m" * 32],
    [77, b"x" * 20, -5, 10, b"m" * 32],
    [77, b"x" * 20, 0, 2**40, b"m" * 32],
    [77, None, None, None, None],
]


@pytest.mark.parametrize("which", ["head", "worker"])
def test_mistyped_pull_requests_do_not_kill_a_node(cluster, which):
    # Each of these once ended the node manager within 60 ms (a TypeError in its loop).
    node = getattr(cluster, which)
    before = _faults(node)["messages_dropped"]
    context = zmq.Context()
    try:
        dealer = _dealer(context, f"tcp://127.0.0.1:{_data_port(node)}", _identity(8))
        _send_each(dealer, [msgpack.packb(payload) for payload in ISSUE_PAYLOADS])
    finally:
        context.term()
    _wait_dropped(node, before + len(ISSUE_PAYLOADS))
    _serves_tasks(cluster)


def test_a_signed_request_with_absurd_numbers_is_dropped_not_served(cluster):
    node = cluster.head
    key = auth.data_key(cluster.token)
    object_id = os.urandom(20)
    before = _faults(node)["messages_dropped"]
    context = zmq.Context()
    try:
        dealer = _dealer(context, f"tcp://127.0.0.1:{_data_port(node)}", _identity(8))
        for offset, length in ((-1, 10), (0, 2**40), (2**63, 1)):
            mac = auth.sign(key, object_id, b"%d" % offset, b"%d" % length)
            dealer.send(msgpack.packb([77, object_id, offset, length, mac]))
        _wait_dropped(node, before + 3)
        assert not dealer.poll(100), "a request with absurd numbers was answered"
        dealer.close()
    finally:
        context.term()
    _serves_tasks(cluster)


# -- typed garbage of every kind on every port --------------------------------------------------


def test_typed_garbage_on_every_port_is_dropped_and_counted(cluster):
    frames = [frame for _, frame in message_fuzz.variants()]
    head, worker = cluster.head, cluster.worker
    head_log = os.path.join(_session_dir(head), "logs", "node_manager.log")
    log_size = os.path.getsize(head_log)
    ports = [
        (
            head,
            [
                (f"ipc://{lifecycle.node_socket_path(_session_dir(head))}", _identity(16), None),
                (f"tcp://127.0.0.1:{head.port}", _identity(16), cluster.token),  # an authenticated client
                (f"tcp://127.0.0.1:{head.port}", _identity(16) + b"P", cluster.token),  # ... and peer
                (f"tcp://127.0.0.1:{_data_port(head)}", _identity(8), None),
            ],
        ),
        (
            worker,
            [
                (f"ipc://{lifecycle.node_socket_path(_session_dir(worker))}", _identity(16), None),
                (f"tcp://127.0.0.1:{worker.port}", _identity(16) + b"P", cluster.token),
                (f"tcp://127.0.0.1:{_data_port(worker)}", _identity(8), None),
            ],
        ),
    ]
    expected = [_faults(node)["messages_dropped"] for node, _ in ports]
    context = zmq.Context()
    try:
        for index, (_, endpoints) in enumerate(ports):
            for endpoint, identity, token in endpoints:
                _send_each(_dealer(context, endpoint, identity, token), frames)  # one message each
                expected[index] += len(frames)
    finally:
        context.term()
    for (node, _), count in zip(ports, expected):
        _wait_dropped(node, count)
    _serves_tasks(cluster)
    # Twenty thousand drops, a few dozen lines: the log is rate-limited, the counters are exact.
    grown = os.path.getsize(head_log) - log_size
    assert grown < 64 * 1024, f"the log grew by {grown} bytes for {len(frames) * 4} dropped messages"


def test_the_counters_show_in_shoal_status(cluster):
    status = subprocess.run(
        [sys.executable, "-m", "shoal.cli", "status"], capture_output=True, text=True, timeout=60, env=cluster.env
    )
    assert status.returncode == 0, status.stderr
    assert re.search(r"Node \w+ dropped \d+ malformed or unexpected message", status.stdout), status.stdout


# -- the CURVE port before authentication: memory and connections ------------------------------

ZMTP_CURVE_GREETING = b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 0]) + b"CURVE".ljust(20, b"\x00") + b"\x00" * 32


def _stream_big_frame(port: int, limit_bytes: int, report: dict, hold: threading.Event) -> None:
    """Greet as a CURVE client, announce a 512 MiB frame and stream it; never authenticates."""
    sent = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(ZMTP_CURVE_GREETING + b"\x06" + (512 << 20).to_bytes(8, "big"))
            chunk = b"\x00" * (1 << 20)
            deadline = time.monotonic() + 20
            while sent < limit_bytes and time.monotonic() < deadline:
                connection.sendall(chunk)
                sent += len(chunk)
            report.setdefault("sent", []).append(sent)
            hold.wait(30)  # keep it open while the node's memory is measured
    except OSError:
        report.setdefault("sent", []).append(sent)
        report.setdefault("reset", []).append(sent)


def test_a_huge_frame_before_the_handshake_does_not_grow_the_node(cluster):
    node = psutil.Process(cluster.head.manager_pid)
    rss_before = node.memory_info().rss
    report: dict = {}
    hold = threading.Event()
    streams = [
        threading.Thread(target=_stream_big_frame, args=(cluster.head.port, 96 << 20, report, hold)) for _ in range(2)
    ]
    for stream in streams:
        stream.start()
    try:
        wait_for(lambda: len(report.get("sent", [])) == 2, 60, lambda: str(report))
        grown = node.memory_info().rss - rss_before
    finally:
        hold.set()
        for stream in streams:
            stream.join(60)
    assert grown < 32 << 20, f"the node manager grew by {grown >> 20} MiB for {report}"
    assert len(report.get("reset", [])) == 2, f"the node kept reading an unauthenticated huge frame: {report}"
    _serves_tasks(cluster)


def _closed_by_server(connection: socket.socket) -> bool:
    try:
        while connection.recv(4096):  # the server's greeting, then the end
            pass
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def test_half_open_connections_are_limited_and_timed_out(cluster):
    before = _faults(cluster.head)["connections_refused"]
    connections = [socket.create_connection(("127.0.0.1", cluster.head.port), timeout=5) for _ in range(5 * PER_HOST)]
    try:
        for connection in connections:
            connection.setblocking(False)
        # All but PER_HOST are refused at once; the rest are closed at the handshake deadline.
        wait_for(
            lambda: _faults(cluster.head)["connections_refused"] >= before + 4 * PER_HOST,
            30,
            lambda: str(_faults(cluster.head)),
        )
        wait_for(
            lambda: all(_closed_by_server(connection) for connection in connections),
            HANDSHAKE_TIMEOUT_S + 15,
            lambda: f"{sum(not _closed_by_server(c) for c in connections)} connections still open",
        )
    finally:
        for connection in connections:
            connection.close()
    _serves_tasks(cluster)
    _remote_driver_works(cluster)


def _remote_driver(cluster, source: str):
    """Run `source` in a driver that connects over TCP with the token, as from another machine:
    its own TMPDIR, so it does not find the head's ipc socket (`REMOTE` checks it did not)."""
    with tempfile.TemporaryDirectory(prefix="shoal-elsewhere-") as elsewhere:
        env = dict(cluster.env, SHOAL_TOKEN=cluster.token, TMPDIR=elsewhere)
        return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, env=env, timeout=120)


REMOTE = "from shoal._core import client; assert client.current().remote"


def _remote_driver_works(cluster) -> None:
    result = _remote_driver(
        cluster,
        f"""
import shoal
shoal.init(address="127.0.0.1:{cluster.head.port}")
{REMOTE}
print(shoal.get(shoal.remote(lambda: "still serving").remote(), timeout=60))
shoal.shutdown()
""",
    )
    assert result.stdout.strip() == "still serving", result.stderr


def test_big_messages_of_authenticated_peers_still_arrive_in_pieces(cluster):
    # A TCP driver's put and get of 20 MB: frames cut to the port's size and joined back.
    result = _remote_driver(
        cluster,
        f"""
import numpy as np, shoal
shoal.init(address="127.0.0.1:{cluster.head.port}")
{REMOTE}
array = np.arange(2_500_000)
ref = shoal.put(array)
total = shoal.remote(lambda values: int(values.sum()))
assert shoal.get(total.options(resources={{"node_a": 0.1}}).remote(ref), timeout=60) == int(array.sum())
assert (shoal.get(ref, timeout=60) == array).all()
print("big ok")
shoal.shutdown()
""",
    )
    assert "big ok" in result.stdout, result.stderr
    # The worker node's answer to a state query is bigger than one frame of the CURVE port.
    from shoal.util import state

    refs = [pid_here.options(resources={"node_a": 0.001}).remote() for _ in range(3000)]
    shoal.get(refs, timeout=120)
    ran_there = {ref.task_id().hex() for ref in refs}
    rows = [row for row in state.list_tasks(limit=100_000) if row["task_id"] in ran_there]
    # Only the node that ran them knows their workers' pids: its rows came through.
    assert len(rows) == 3000 and all(row["worker_pid"] for row in rows)


def test_pieces_beyond_the_authenticated_bound_are_dropped(cluster):
    from shoal._core import protocol, tcp_frames

    before = _faults(cluster.head)
    context = zmq.Context()
    try:
        dealer = _dealer(context, f"tcp://127.0.0.1:{cluster.head.port}", _identity(16), cluster.token)
        big = protocol.encode(protocol.ExportFunction(b"f" * 16, b"\x00" * (MAX_MESSAGE_BYTES + 1)))
        dealer.send_multipart(tcp_frames.split([big]), copy=False)
        dealer.close()
    finally:
        context.term()
    _wait_dropped(cluster.head, before["messages_dropped"] + 1)
    _serves_tasks(cluster)


def test_a_tcp_driver_sending_more_than_the_cluster_takes_gets_an_error_at_the_call(cluster):
    # Each of these was dropped by the node, counted, and left the driver waiting for nothing.
    result = _remote_driver(
        cluster,
        f"""
import numpy as np, shoal
shoal.init(address="127.0.0.1:{cluster.head.port}")
{REMOTE}
big = np.ones({MAX_MESSAGE_BYTES} // 8 + 1)
def refused(call):
    try:
        call()
    except ValueError as error:
        print("REFUSED:", error)
    else:
        print("ACCEPTED")
refused(lambda: shoal.put(big))
size = shoal.remote(lambda values: values.size)
refused(lambda: size.remote(big))
refused(lambda: shoal.remote(lambda: big.size).remote())
# Just under the limit still goes, and the driver goes on.
print("SIZE", shoal.get(size.remote(np.ones({MAX_MESSAGE_BYTES} // 8 - 4096)), timeout=60))
print("PUT", shoal.get(shoal.put(b"small"), timeout=60))
shoal.shutdown()
""",
    )
    refusals = re.findall(r"^REFUSED: (.*)$", result.stdout, re.M)
    assert len(refusals) == 3 and "ACCEPTED" not in result.stdout, result.stdout + result.stderr
    assert all(f"SHOAL_MAX_MESSAGE_BYTES={MAX_MESSAGE_BYTES:,}" in text for text in refusals), refusals
    assert refusals[0].startswith("The object passed to shoal.put()"), refusals[0]
    assert refusals[1].startswith("The arguments of a call of"), refusals[1]
    assert refusals[2].startswith("The pickled definition"), refusals[2]
    assert f"SIZE {MAX_MESSAGE_BYTES // 8 - 4096}" in result.stdout and "PUT b'small'" in result.stdout, result.stderr


# -- a node manager that dies keeps its logs ----------------------------------------------------


def test_a_driver_whose_node_manager_died_says_where_its_logs_are(tmp_path):
    source = """
import os, signal, shoal
from shoal._core import client
shoal.init(num_cpus=1)
os.kill(client.current().node_info.node_manager_pid, signal.SIGKILL)
try:
    shoal.get(shoal.remote(lambda: 1).remote(), timeout=60)
except Exception as error:
    print("ERROR:", error)
shoal.shutdown()
"""
    env = dict(os.environ, TMPDIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, env=env, timeout=120)
    found = re.search(r"its logs are in (\S+)", result.stdout)
    assert found, result.stdout + result.stderr
    kept = found.group(1)
    try:
        assert "died" in result.stdout
        assert os.path.isfile(os.path.join(kept, "node_manager.log")), os.listdir(kept)
        assert not [name for name in os.listdir(os.path.dirname(os.path.dirname(kept))) if name.startswith("session_")]
    finally:
        shutil.rmtree(kept, ignore_errors=True)


def test_shoal_status_finds_the_logs_of_a_head_that_died(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    cli = [sys.executable, "-m", "shoal.cli"]
    started = subprocess.run(cli + ["start", "--head", "--num-cpus", "1"], capture_output=True, text=True, env=env)
    assert started.returncode == 0, started.stderr
    pid = int(re.search(r"node manager pid (\d+)", started.stdout).group(1))
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not lifecycle.pid_alive(pid), 30)
    status = subprocess.run(cli + ["status"], capture_output=True, text=True, env=env, timeout=60)
    found = re.search(r"its logs are in (\S+)", status.stderr)
    assert status.returncode == 1 and found, status.stdout + status.stderr
    try:
        assert str(pid) in status.stderr
        assert os.path.isfile(os.path.join(found.group(1), "node_manager.log"))
    finally:
        shutil.rmtree(found.group(1), ignore_errors=True)
        subprocess.run(cli + ["stop"], capture_output=True, env=env, timeout=60)


# What a node manager runs, set to fail: every ZeroMQ poll of the process titled shoal::node raises
# once the trigger file exists (the loop's own poll, which no handler guard covers).
_FAILING_POLL = """
import os
import zmq

_poll = zmq.Poller.poll


def _failing_poll(self, timeout=None):
    with open("/proc/self/comm") as comm:
        is_node_manager = comm.read().strip() == "shoal::node"
    if is_node_manager and os.path.exists(os.environ["SHOAL_TEST_FAIL_POLL"]):
        raise RuntimeError("injected poll failure")
    return _poll(self, timeout)


zmq.Poller.poll = _failing_poll
"""


def test_a_node_manager_whose_loop_fails_keeps_its_logs_and_tells_the_driver(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_FAILING_POLL)
    trigger = tmp_path / "fail-now"
    env = dict(
        os.environ,
        TMPDIR=str(tmp_path),
        PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
        SHOAL_TEST_FAIL_POLL=str(trigger),
    )
    source = f"""
import pathlib, shoal
shoal.init(num_cpus=1)
one = shoal.remote(lambda: 1)
assert shoal.get(one.remote(), timeout=60) == 1
pathlib.Path({str(trigger)!r}).touch()
try:
    shoal.get(one.remote(), timeout=60)
except Exception as error:
    print("ERROR:", error)
shoal.shutdown()
"""
    result = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, env=env, timeout=120)
    found = re.search(r"its logs are in ([^\s)]+)", result.stdout)
    assert found and "the node manager failed: RuntimeError: injected poll failure" in result.stdout, (
        result.stdout + result.stderr
    )
    kept = found.group(1)
    try:
        with open(os.path.join(kept, "node_manager.err")) as err:
            assert "injected poll failure" in err.read()  # the traceback, written as the process ended
        with open(os.path.join(kept, "node_manager.log")) as log:
            assert "loop failed" in log.read()
    finally:
        shutil.rmtree(kept, ignore_errors=True)


def test_shoal_stop_prunes_the_crash_logs_beyond_the_newest(tmp_path):
    crashed = tmp_path / f"shoal-{os.getuid()}" / lifecycle.CRASHED_DIR
    for index in range(3):
        path = crashed / f"session_{index}"
        path.mkdir(parents=True)
        at = time.time() - (3 - index) * 60  # session_2 is the newest
        os.utime(path, (at, at))
    env = dict(os.environ, TMPDIR=str(tmp_path), SHOAL_CRASH_LOGS_KEEP="1")
    stopped = subprocess.run([sys.executable, "-m", "shoal.cli", "stop"], capture_output=True, text=True, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert os.listdir(crashed) == ["session_2"]
