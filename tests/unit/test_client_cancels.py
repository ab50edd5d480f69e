"""A worker's client passes every CancelRunning to its executor, even one that came first.

The node may cancel a worker's first task as soon as the worker registers, before its executor
listens; the client keeps such cancels and hands them over when the listener is installed.
No node is needed: the client's handler is fed real messages, and no socket is opened.
"""

from __future__ import annotations

from shoal._core import protocol
from shoal._core.client import CoreClient


def test_cancels_before_the_executor_listens_are_handed_over_in_order():
    client = CoreClient("ipc:///nonexistent/shoal-test", "worker")
    try:
        first, second = b"a" * 16, b"b" * 16
        client._handle(protocol.CancelRunning(first, False))
        client._handle(protocol.CancelRunning(second, True))
        heard: list = []
        client.listen_for_cancels(lambda task_id, force: heard.append((task_id, force)))
        assert heard == [(first, False), (second, True)]
        third = b"c" * 16
        client._handle(protocol.CancelRunning(third, False))
        assert heard[-1] == (third, False) and len(heard) == 3
    finally:
        client.close()
