"""Unit tests for what a driver connected over TCP may send: no message over the node's limit.

The node drops a message over SHOAL_MAX_MESSAGE_BYTES unanswered, so the client refuses one at
the call (ensure_fits) and cuts a batch of submissions into several messages that each fit.
No processes: a CoreClient that never connects, told the limit as a registration would tell it.
"""

from __future__ import annotations

import os

import pytest
from shoal._core import protocol
from shoal._core.client import CoreClient
from shoal._core.protocol import RegisterClientReply, SubmitTasks, TaskSpec

LIMIT = 1 << 20


@pytest.fixture
def remote_client():
    client = CoreClient("tcp://192.0.2.1:6380", "driver", token="t")
    client._node_info = RegisterClientReply(b"n" * 28, "", [0, -1, 0], {}, "192.0.2.1", 0, LIMIT)
    yield client
    client.close()


def _spec(args: bytes) -> TaskSpec:
    return TaskSpec(
        os.urandom(16),
        b"o" * 16,
        None,
        b"f" * 16,
        "module.f",
        args,
        [],
        False,
        1,
        {},
        0,
        False,
        None,
        None,
        None,
        None,
        [],
    )


def test_a_batch_of_submissions_over_the_limit_goes_in_messages_that_each_fit(remote_client):
    specs = [_spec(os.urandom(100 * 1024)) for _ in range(40)]  # 4 MB in all
    frames = remote_client._encode_submits(specs)
    assert len(frames) >= 4 and all(len(frame) <= LIMIT for frame in frames)
    sent = [spec for frame in frames for spec in protocol.decode(frame).specs]
    assert sent == specs  # all of them, in order
    few = specs[:3]
    assert remote_client._encode_submits(few) == [protocol.encode(SubmitTasks(few))]


def test_a_message_over_the_limit_is_refused_naming_it(remote_client):
    remote_client.ensure_fits(protocol.ExportFunction(b"f" * 16, b""), LIMIT - 4096, "A definition")
    with pytest.raises(ValueError, match=rf"^A definition is .* SHOAL_MAX_MESSAGE_BYTES={LIMIT:,} on its nodes"):
        remote_client.ensure_fits(protocol.ExportFunction(b"f" * 16, b""), LIMIT, "A definition")
    with pytest.raises(ValueError, match="A call of module.f with its arguments"):
        remote_client.submit(_spec(b"x" * LIMIT), [])
    assert not remote_client.outgoing


def test_a_client_over_ipc_or_not_yet_registered_has_no_limit():
    local = CoreClient("ipc:///tmp/nowhere.sock", "driver")
    try:
        local._node_info = RegisterClientReply(b"n" * 28, "", [0, -1, 0], {}, "127.0.0.1", 0, LIMIT)
        assert local.max_message_bytes == 0
        local.ensure_fits(protocol.ExportFunction(b"f" * 16, b""), 10 * LIMIT, "anything")
    finally:
        local.close()
    unregistered = CoreClient("tcp://192.0.2.1:6380", "driver", token="t")
    try:
        assert unregistered.max_message_bytes == 0
    finally:
        unregistered.close()
