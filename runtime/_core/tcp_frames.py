"""Frames sent to a CURVE port are cut to size, so the port can refuse big frames from anyone.

libzmq applies one MAXMSGSIZE to every frame a socket receives, the CURVE handshake's
included, and reserves memory for a frame's declared size as the bytes arrive, before anyone
is authenticated. So the cluster's listening TCP sockets take frames of at most FRAME_BYTES
(a handshake needs well under 1 KiB), and senders cut larger frames in pieces:

    [f0, f1 (200 KiB), f2]  ->  [FramePieces([1, 4, 1]), f0, f1a, f1b, f1c, f1d, f2]

Frames arrive only from authenticated peers, and the size of a frame joined back is bounded
separately (`max_message_bytes`, configurable). A message whose frames all fit is sent as is.

Pure: no sockets.
"""

from __future__ import annotations

from . import protocol

FRAME_BYTES = 64 * 1024
SOCKET_MAX_BYTES = FRAME_BYTES + 1024  # the listener's MAXMSGSIZE: a piece plus CURVE's framing
_HEADER_PREFIX = protocol.encode(protocol.FramePieces([]))[:2]  # msgpack: a 1-field record of its kind


def split(frames: list, frame_bytes: int = FRAME_BYTES) -> list:
    """The frames to send: as given when all fit, else headed by FramePieces with big ones cut."""
    if all(len(frame) <= frame_bytes for frame in frames):
        return frames
    counts = []
    pieces = []
    for frame in frames:
        if len(frame) <= frame_bytes:
            counts.append(1)
            pieces.append(frame)
            continue
        view = memoryview(frame)
        cut = [view[start : start + frame_bytes] for start in range(0, len(view), frame_bytes)]
        counts.append(len(cut))
        pieces.extend(cut)
    return [protocol.encode(protocol.FramePieces(counts)), *pieces]


def join(frames: list, max_bytes: int) -> list:
    """The frames as sent, from what `split` made of them.

    Raises:
        ValueError: the pieces do not add up, or a joined frame exceeds `max_bytes`.
    """
    if not frames or frames[0][:2] != _HEADER_PREFIX:
        return frames
    header = protocol.decode(frames[0])
    counts = header.counts if type(header) is protocol.FramePieces else None
    if type(counts) is not list or not all(type(count) is int and count >= 1 for count in counts):
        raise ValueError("a FramePieces header must list piece counts >= 1")
    if sum(counts) != len(frames) - 1:
        raise ValueError(f"FramePieces announces {sum(counts)} pieces, {len(frames) - 1} came")
    joined = []
    index = 1
    for count in counts:
        if count == 1:
            frame = frames[index]
        else:
            size = sum(len(piece) for piece in frames[index : index + count])
            if size > max_bytes:
                raise ValueError(f"a frame of {size} bytes exceeds max_message_bytes ({max_bytes})")
            frame = b"".join(frames[index : index + count])
        joined.append(frame)
        index += count
    return joined
