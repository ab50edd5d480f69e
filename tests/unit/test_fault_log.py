"""Unit tests for the node manager's counters of dropped messages and their rate-limited log."""

from __future__ import annotations

import logging

import pytest
from shoal._core.fault_log import FaultLog


@pytest.fixture
def log(caplog):
    caplog.set_level(logging.INFO, logger="test.faults")
    return logging.getLogger("test.faults"), caplog


def test_a_flood_of_drops_is_counted_in_full_and_logged_a_few_times(log):
    logger, caplog = log
    faults = FaultLog(logger, interval_s=60, lines_per_interval=5)
    for n in range(10_000):
        faults.drop("invalid", f"message {n}", now=n * 0.001)
    assert faults.dropped["invalid"] == 10_000
    assert faults.totals() == {"messages_dropped": 10_000, "handler_errors": 0, "connections_refused": 0}
    assert len(caplog.records) == 5
    assert "counted, not logged" in caplog.records[-1].getMessage()


def test_the_next_window_says_how_many_lines_were_left_out(log):
    logger, caplog = log
    faults = FaultLog(logger, interval_s=10, lines_per_interval=2)
    for _ in range(7):
        faults.drop("malformed", "garbage", now=1.0)
    faults.drop("malformed", "garbage", now=11.0)
    assert "5 more like it left out" in caplog.records[-1].getMessage()


def test_flush_reports_what_was_left_out_when_no_further_fault_comes(log):
    logger, caplog = log
    faults = FaultLog(logger, interval_s=10, lines_per_interval=1)
    for _ in range(4):
        faults.drop("unsigned", "request", now=0.0)
    faults.flush(now=5.0)
    assert len(caplog.records) == 1  # the window is still open
    faults.flush(now=10.0)
    assert "3 more unsigned lines left out" in caplog.records[-1].getMessage()
    faults.flush(now=30.0)
    assert len(caplog.records) == 2


def test_kinds_are_limited_separately(log):
    logger, caplog = log
    faults = FaultLog(logger, interval_s=60, lines_per_interval=1)
    for _ in range(3):
        faults.drop("invalid", "x", now=0.0)
        faults.refused_connection("y", now=0.0)
    assert len(caplog.records) == 2
    assert faults.totals()["connections_refused"] == 3


def test_handler_errors_keep_their_traceback(log):
    logger, caplog = log
    faults = FaultLog(logger)
    try:
        {}["missing"]
    except KeyError:
        faults.handler_error("handling Something from client ab", now=0.0)
    assert faults.handler_errors == 1
    record = caplog.records[-1]
    assert record.levelno == logging.ERROR and record.exc_info[0] is KeyError
    assert "goes on" in record.getMessage()
