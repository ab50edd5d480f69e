"""(9) Floods before authentication: many TCP connections held open in the middle of their
handshake, and one huge frame sent before the CURVE handshake (and to the data port). The node's
memory must stay bounded by the connections, not grow with the bytes a stranger sends, and it
must keep serving a driver that has the token.
"""

from __future__ import annotations

import resource
import socket
import struct

import pytest
import shoal

from tests.reliability import faults, fuzzing

MIB = 1024 * 1024
RSS_PER_HELD_CONNECTION_BYTES = 32 * 1024  # about 8x what a half-open ZMTP connection costs today
RSS_NOISE_BYTES = 16 * MIB  # the node's own drift while the connections open
BIG_FRAME_RSS_BOUND_BYTES = 32 * MIB  # what one unauthenticated frame may cost the node, however big
DECLARED_FRAME_BYTES = 2**32 - 1  # just under the TCP port's message limit (config.max_message_bytes)
CHUNK_BYTES = 1 * MIB


@pytest.fixture
def many_files(chaos_scale):
    """Room in this process for the connections it holds (the hard limit allows it on Linux)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = chaos_scale.held_connections + 1024
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.fail(f"RLIMIT_NOFILE hard limit {hard} is below the {wanted} files this scenario holds")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@shoal.remote
def triple(index):
    return 3 * index


def _job_over_tcp(target, figures, tasks: int = 100) -> None:
    shoal.init(address=target.tcp_address, _token=target.token)
    try:
        values = shoal.get([triple.remote(index) for index in range(tasks)], timeout=60)
    finally:
        shoal.shutdown()
    figures.results += tasks
    figures.correct += sum(value == 3 * index for index, value in enumerate(values))


def test_held_preauth_connections_keep_memory_bounded(target, many_files, chaos_scale, figures):
    ports = target.ports()
    figures.input_kind = "held connections"
    figures.parameters = {"connections": chaos_scale.held_connections, "ports": ["tcp curve", "tcp data"]}
    before = peak = faults.rss_bytes(target.pid)
    held = []
    try:
        for index in range(chaos_scale.held_connections):
            port = ports["tcp curve"] if index % 2 else ports["tcp data"]
            connection = socket.create_connection(port.address, timeout=10)
            held.append(connection)
            connection.sendall(fuzzing.ZMTP_SIGNATURE)  # the handshake starts, and stops there
            figures.inputs += 1
            if index % 100 == 0:
                peak = max(peak, faults.rss_bytes(target.pid))
        peak = max(peak, faults.rss_bytes(target.pid))
        state = target.settled()
        _job_over_tcp(target, figures)  # while every connection is still held
    finally:
        for connection in held:
            connection.close()
    growth = peak - before
    figures.note(f"node RSS {before / MIB:.0f} MiB before, +{growth / MIB:.1f} MiB with them all held; node {state}")
    figures.crashes += state == "crashed"
    figures.hangs += state == "hung"
    assert state == "ok" and target.settled() == "ok", figures.notes
    assert figures.correct == figures.results, figures.notes
    assert growth <= RSS_NOISE_BYTES + RSS_PER_HELD_CONNECTION_BYTES * chaos_scale.held_connections, figures.notes


def _stream_frame(port, opening: bytes, total_bytes: int, pid: int) -> tuple[int, int]:
    """Send `opening`, then garbage up to `total_bytes` in one frame; (bytes the node took, peak RSS)."""
    peak = faults.rss_bytes(pid)
    sent = 0
    chunk = b"\xab" * CHUNK_BYTES
    with socket.create_connection(port.address, timeout=10) as connection:
        try:
            connection.sendall(opening)
            while sent < total_bytes:
                connection.sendall(chunk)
                sent += len(chunk)
                if sent % (16 * MIB) == 0:
                    peak = max(peak, faults.rss_bytes(pid))
        except OSError:
            pass  # the node hung up: what it should do
        peak = max(peak, faults.rss_bytes(pid))
    return sent, peak


def test_one_huge_preauth_frame_keeps_memory_bounded(target, chaos_scale, figures):
    ports = target.ports()
    figures.input_kind = "MiB in unauthenticated frames"
    figures.parameters = {
        "declared_frame_bytes": DECLARED_FRAME_BYTES,
        "bytes_sent_per_port": chaos_scale.big_frame_bytes,
    }
    size = struct.pack(">Q", DECLARED_FRAME_BYTES)
    openings = {
        # A command frame (flags: long, command) in place of the CURVE HELLO.
        "tcp curve": fuzzing.greeting(b"CURVE") + b"\x06" + size,
        # The data port has no CURVE: a READY, then a message frame far over its 4 KiB limit.
        "tcp data": fuzzing.greeting(b"NULL") + fuzzing.NULL_READY_DEALER + b"\x02" + size,
    }
    growths = {}
    for name, opening in openings.items():
        before = faults.rss_bytes(target.pid)
        sent, peak = _stream_frame(ports[name], opening, chaos_scale.big_frame_bytes, target.pid)
        figures.inputs += sent // MIB
        growths[name] = peak - before
        figures.note(
            f"{name}: the node took {sent / MIB:.0f} MiB of the frame, its RSS grew {growths[name] / MIB:.1f} MiB"
        )
        state = target.settled()
        figures.crashes += state == "crashed"
        figures.hangs += state == "hung"
        if state != "ok":
            target.restart()
    _job_over_tcp(target, figures)
    assert figures.crashes == 0 and figures.hangs == 0, figures.notes
    assert figures.correct == figures.results
    assert max(growths.values()) <= BIG_FRAME_RSS_BOUND_BYTES, figures.notes
