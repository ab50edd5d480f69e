"""Unit tests for admitting TCP connections not yet proven (by the CURVE handshake, or a signed request)."""

from __future__ import annotations

from shoal._core.connection_gate import ConnectionGate


def test_connections_beyond_the_per_host_limit_are_refused():
    gate = ConnectionGate(per_host=2, total=10, handshake_timeout_s=5)
    assert gate.accepted(10, "10.0.0.1", 0.0) is None
    assert gate.accepted(11, "10.0.0.1", 0.0) is None
    refusal = gate.accepted(12, "10.0.0.1", 0.0)
    assert refusal is not None and "10.0.0.1" in refusal
    assert gate.accepted(13, "10.0.0.2", 0.0) is None  # another host has its own share
    assert gate.unproven() == 3


def test_connections_beyond_the_total_are_refused_from_any_host():
    gate = ConnectionGate(per_host=5, total=3, handshake_timeout_s=5)
    for fd, host in enumerate(("a", "b", "c")):
        assert gate.accepted(fd, host, 0.0) is None
    assert "3 connections" in gate.accepted(9, "d", 0.0)


def test_a_proven_or_closed_connection_frees_its_place():
    gate = ConnectionGate(per_host=1, total=10, handshake_timeout_s=5)
    assert gate.accepted(10, "h", 0.0) is None
    assert gate.accepted(11, "h", 0.0) is not None
    gate.proven(10)
    assert gate.accepted(11, "h", 0.0) is None
    gate.closed(11)
    assert gate.unproven() == 0
    gate.closed(11)  # twice, or never seen: nothing happens
    gate.proven(99)
    assert gate.accepted(12, "h", 0.0) is None


def test_connections_older_than_the_handshake_timeout_no_longer_count():
    gate = ConnectionGate(per_host=1, total=10, handshake_timeout_s=5)
    assert gate.accepted(10, "h", 0.0) is None
    assert gate.expire(4.9) == []
    assert gate.accepted(11, "h", 4.9) is not None
    assert gate.expire(5.0) == [10]  # libzmq closed it by now, or it is authenticated; or the guard closes it
    assert gate.accepted(11, "h", 5.0) is None
    assert gate.unproven() == 1
    assert gate.expire(5.0) == []  # each lapses once


def test_a_reused_descriptor_is_a_new_connection():
    gate = ConnectionGate(per_host=1, total=10, handshake_timeout_s=5)
    assert gate.accepted(10, "a", 0.0) is None
    assert gate.accepted(10, "b", 1.0) is None  # fd 10 closed and was reused before its event came
    assert gate.accepted(11, "a", 1.0) is None
    assert gate.unproven() == 2


def test_refusals_say_what_the_connections_have_not_done():
    gate = ConnectionGate(per_host=1, total=10, handshake_timeout_s=5, pending="sent a signed request")
    assert gate.accepted(10, "h", 0.0) is None
    assert gate.accepted(11, "h", 0.0) == "1 connections from h have not sent a signed request yet"
