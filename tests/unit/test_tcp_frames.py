"""Unit tests for cutting frames to the CURVE ports' size and joining them back."""

from __future__ import annotations

import pytest
from shoal._core import protocol, tcp_frames

LIMIT = 1 << 30


def test_frames_that_fit_are_sent_as_they_are():
    frames = [protocol.encode(protocol.Keepalive(1)), b"x" * tcp_frames.FRAME_BYTES]
    assert tcp_frames.split(frames) is frames
    assert tcp_frames.join(frames, LIMIT) is frames


@pytest.mark.parametrize("sizes", [[200_000], [10, 200_000, 10], [tcp_frames.FRAME_BYTES + 1, 3 << 20]])
def test_big_frames_are_cut_to_size_and_joined_back(sizes):
    frames = [protocol.encode(protocol.Keepalive(7))] + [bytes([n % 251]) * size for n, size in enumerate(sizes)]
    sent = tcp_frames.split(frames)
    assert all(len(piece) <= tcp_frames.FRAME_BYTES for piece in sent)
    assert type(protocol.decode(sent[0])) is protocol.FramePieces
    assert tcp_frames.join([bytes(piece) for piece in sent], LIMIT) == frames


def test_a_joined_frame_larger_than_the_authenticated_bound_is_refused():
    sent = [bytes(piece) for piece in tcp_frames.split([b"k", b"x" * 300_000])]
    assert tcp_frames.join(sent, 300_000)[1] == b"x" * 300_000
    with pytest.raises(ValueError, match="max_message_bytes"):
        tcp_frames.join(sent, 299_999)


HEADER_PREFIX = protocol.encode(protocol.FramePieces([]))[:2]  # msgpack: [kind, ...] of one field


@pytest.mark.parametrize(
    "frames",
    [
        [protocol.encode(protocol.FramePieces([2])), b"a"],  # fewer pieces than announced
        [protocol.encode(protocol.FramePieces([1])), b"a", b"b"],  # more
        [protocol.encode(protocol.FramePieces([0, 1])), b"a"],
        [HEADER_PREFIX + b"\xc1"],  # the header's prefix, then garbage
        [HEADER_PREFIX + b"\x07"],  # a header whose counts are not a list
    ],
)
def test_pieces_that_do_not_add_up_are_a_value_error(frames):
    with pytest.raises(ValueError):
        tcp_frames.join(frames, LIMIT)


def test_the_listener_bound_leaves_room_for_curve_framing_only():
    assert tcp_frames.FRAME_BYTES < tcp_frames.SOCKET_MAX_BYTES <= tcp_frames.FRAME_BYTES + 4096
