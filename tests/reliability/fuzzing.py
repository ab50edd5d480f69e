"""A node to fuzz, and the garbage to send it: raw bytes for every listening port, and typed
messages (every kind protocol.py registers, with fields replaced by wrong values).

`FuzzTarget` starts one node manager with every port a node opens: the ipc control socket and
event socket (found from the session directory, as clients find them), the TCP port guarded by
CURVE and the data port (found from the process's listening sockets). It tells whether the node
`settled()` after a batch: still alive and still running its loop (enough new snapshots on its
event stream that housekeeping ran after the whole batch was read). A node that died is restarted, so one bad
message does not hide the next; its log tail is kept for the report.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields

import msgpack
import zmq
from shoal._core import lifecycle, node_launcher, protocol

from tests.reliability import faults

NODE_STORE_BYTES = 64 * 1024 * 1024
SETTLE_TIMEOUT_S = 5.0
ROUTER_BATCH = 1000  # messages the node manager reads from one socket per loop turn (_drain_router)


@dataclass(frozen=True)
class Port:
    name: str
    family: int  # socket.AF_UNIX or socket.AF_INET
    address: object  # a path, or (host, port)

    @property
    def zmq_endpoint(self) -> str:
        return (
            f"ipc://{self.address}" if self.family == socket.AF_UNIX else f"tcp://{self.address[0]}:{self.address[1]}"
        )


class FuzzTarget:
    """One node manager of this test, with every port open; restarted when it dies."""

    def __init__(self):
        self.context = zmq.Context()
        self.crash_logs: list[str] = []
        self.head = None
        self.events = None
        self._start()

    def _start(self) -> None:
        total = node_launcher.node_resources(2, 0, None, NODE_STORE_BYTES, "127.0.0.1")
        self.head = node_launcher.start_node(total, NODE_STORE_BYTES, None, tcp_port=faults.free_port())
        self.events = self.context.socket(zmq.SUB)
        self.events.setsockopt(zmq.LINGER, 0)
        self.events.setsockopt(zmq.SUBSCRIBE, b"")
        self.events.connect(f"ipc://{lifecycle.node_socket_path(self.head.session_dir, 'events')}")
        self._ports = self._find_ports()
        # Held open: a node that dies of an exception removes its session directory, logs too,
        # and an open file outlives its name.
        self._logs = []
        for name in ("node_manager.log", "node_manager.err"):
            try:
                self._logs.append(open(os.path.join(self.head.session_dir, "logs", name), "rb"))
            except OSError:
                pass

    @property
    def pid(self) -> int:
        return self.head.pid

    @property
    def token(self) -> str:
        return self.head.token

    @property
    def tcp_address(self) -> str:
        return self.head.tcp_address

    def ports(self) -> dict[str, Port]:
        """Every port the node listens on, by what it is (found when it started)."""
        return dict(self._ports)

    def _find_ports(self) -> dict[str, Port]:
        session_dir = self.head.session_dir
        host, _, tcp_port = self.head.tcp_address.rpartition(":")
        data_ports = faults.listening_tcp_ports(self.pid) - {int(tcp_port)}
        if len(data_ports) != 1:
            raise AssertionError(f"expected one data port besides {tcp_port}, the node listens on {data_ports}")
        return {
            "ipc control": Port("ipc control", socket.AF_UNIX, lifecycle.node_socket_path(session_dir)),
            "ipc events": Port("ipc events", socket.AF_UNIX, lifecycle.node_socket_path(session_dir, "events")),
            "tcp curve": Port("tcp curve", socket.AF_INET, (host, int(tcp_port))),
            "tcp data": Port("tcp data", socket.AF_INET, (host, data_ports.pop())),
        }

    def settled(self, messages: int = 0, timeout_s: float = SETTLE_TIMEOUT_S) -> str:
        """How the node took what was just sent to it: "ok" once it published enough new snapshots,
        else "crashed" (it exited) or "hung" (alive, but no snapshots within `timeout_s` each).

        The node reads at most 1,000 messages from a socket per loop turn and publishes a snapshot
        as it starts its housekeeping, at most every half second. So `messages` are all read by the
        (messages // 1000 + 2)-th snapshot, and the one after that proves a whole housekeeping pass
        (where a bad client record would fail) ran after the last of them.
        """
        wanted = messages // ROUTER_BATCH + 3
        deadline = time.monotonic() + timeout_s * (1 + messages // ROUTER_BATCH)
        seen = 0
        while seen < wanted:
            if not faults.alive(self.pid):
                return "crashed"
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return "hung"
            if self.events.poll(int(min(remaining_s, 0.25) * 1000)):
                seen += type(protocol.decode(self.events.recv())) is protocol.ClusterSnapshot
        return "ok"

    def log_tail(self, lines: int = 12) -> str:
        """The last lines the node logged, read from the files it had open when it started."""
        text = []
        for handle in self._logs:
            handle.seek(0)
            text += [line for line in handle.read().decode(errors="replace").splitlines() if line.strip()]
        return "\n".join(text[-lines:])

    def restart(self) -> None:
        """Keep the dead node's log tail, stop what is left of it, start a fresh one."""
        self.crash_logs.append(self.log_tail())
        self._stop()
        self._start()

    def _stop(self) -> None:
        for handle in getattr(self, "_logs", []):
            handle.close()
        self._logs = []
        if self.events is not None:
            self.events.close(linger=0)
            self.events = None
        if self.head is not None:
            node_launcher.stop_node(self.head)
            self.head = None

    def close(self) -> None:
        self._stop()
        self.context.term()


# -- raw garbage -------------------------------------------------------------------------------

ZMTP_SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"


def greeting(mechanism: bytes, major: int = 3, minor: int = 0) -> bytes:
    """A ZMTP 3 greeting (64 bytes) naming `mechanism`, as a client sends it."""
    return ZMTP_SIGNATURE + bytes([major, minor]) + mechanism.ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


NULL_READY_DEALER = b"\x04\x1a\x05READY\x0bSocket-Type\x00\x00\x00\x06DEALER"
"""The READY command a DEALER sends after a NULL-mechanism greeting: what a real client says next."""


def raw_inputs(rng: random.Random, count: int) -> Iterator[bytes]:
    """`count` byte strings: random bytes, ZMTP greetings followed by garbage, frame headers that
    announce huge sizes, other protocols' openings, nothing at all."""
    makers = [
        lambda: rng.randbytes(rng.randint(1, 2048)),
        lambda: rng.randbytes(rng.randint(2048, 65536)),
        lambda: greeting(b"NULL") + rng.randbytes(rng.randint(0, 512)),
        lambda: greeting(b"CURVE") + rng.randbytes(rng.randint(0, 512)),
        lambda: greeting(rng.choice([b"PLAIN", b"GSSAPI", rng.randbytes(20)]), rng.randint(0, 255)),
        lambda: greeting(b"NULL")[: rng.randint(1, 63)],
        lambda: greeting(b"NULL") + b"\x06" + struct.pack(">Q", rng.choice([2**31, 2**40, 2**63 - 1])) + b"\x05READY",
        lambda: greeting(b"NULL") + NULL_READY_DEALER + b"\x02" + b"\xff" * 8,
        lambda: b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        lambda: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(200),  # a TLS ClientHello's start
        lambda: b"\x00" * rng.randint(1, 4096),
        lambda: b"\xff" * rng.randint(1, 4096),
        lambda: b"",
    ]
    for index in range(count):
        yield makers[index % len(makers)]()


def send_raw(port: Port, payload: bytes, timeout_s: float = 2.0) -> bool:
    """Connect, write `payload`, close. False when the port kept refusing connections for `timeout_s`.

    A full listen backlog (a Unix socket answers EAGAIN) is waited out, not counted as a refusal:
    the sender outpaces the node's accept loop, which is not the node failing.
    """
    deadline = time.monotonic() + timeout_s
    backoff_s = 0.001
    while True:
        connection = socket.socket(port.family, socket.SOCK_STREAM)
        try:
            connection.settimeout(timeout_s)
            try:
                connection.connect(port.address)
            except (BlockingIOError, ConnectionRefusedError):
                if time.monotonic() + backoff_s > deadline:
                    return False
                time.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 0.1)
                continue
            except OSError:
                return False
            if payload:
                try:
                    connection.sendall(payload)
                except OSError:
                    pass  # the node hung up mid-write: that is its right
            return True
        finally:
            connection.close()


# -- typed garbage -----------------------------------------------------------------------------

WRONG_VALUES = (
    None,
    True,
    0,
    -1,
    2**64 - 1,
    -(2**63),
    1.5,
    float("inf"),
    float("nan"),
    "",
    "x" * 300,
    "\u0000\ud7ff",
    b"",
    b"\xff" * 40,
    [],
    [None, 1, "a", b"b"],
    {},
    {"k": [1]},
    {1: b"x", b"k": None},
    [[[[[[[[[[[]]]]]]]]]]],
    [2, b"t", b"o"],  # the start of a TaskSpec, cut short
    list(range(2000)),
)


# Strings the node branches on: with these in the other fields, a wrong field reaches deeper code.
MEANINGFUL_STRINGS = {"kind": "driver", "strategy": "PACK", "stream": "stdout", "state": "ALIVE", "lifetime": None}


def _plausible(cls, index: int, annotation: str, rng: random.Random):
    """A value of the field's own type, so one wrong field at a time is what the node sees."""
    name = cls.FIELDS[index]
    if name in MEANINGFUL_STRINGS and "str" in annotation:
        return MEANINGFUL_STRINGS[name]
    for field_index, target, many in cls.NESTED:
        if field_index == index:
            nested = base_record(target, rng)
            return [nested] if many else nested
    text = annotation.replace(" ", "")
    for name, value in (
        ("bytes", rng.randbytes(16)),
        ("bool", False),
        ("int", 1),
        ("float", 0.5),
        ("str", "x"),
        ("list", []),
        ("dict", {}),
    ):
        if text.startswith(name) or text.split("|")[0] == name:
            return value
    return None


def base_record(cls, rng: random.Random) -> list:
    """`cls` on the wire with a plausible value in every field: [kind, field, ...]."""
    return [cls.KIND] + [_plausible(cls, index, f.type, rng) for index, f in enumerate(fields(cls))]


def typed_garbage(cls, rng: random.Random, wrong_per_field: int) -> Iterator[bytes]:
    """Encoded records of kind `cls`, each with one field replaced by a wrong value, plus records
    of the wrong length and records whose kind is spelled wrong."""
    base = base_record(cls, rng)
    for index in range(1, len(base)):
        candidates = [value for value in WRONG_VALUES if not _same(value, base[index])]
        for value in rng.sample(candidates, min(wrong_per_field, len(candidates))):
            values = list(base)
            values[index] = value
            yield msgpack.packb(values, use_bin_type=True)
    yield msgpack.packb(base[:-1], use_bin_type=True)
    yield msgpack.packb(base + [None], use_bin_type=True)
    yield msgpack.packb([str(cls.KIND), *base[1:]], use_bin_type=True)
    yield msgpack.packb(dict(enumerate(base)), use_bin_type=True)


def _same(left, right) -> bool:
    return type(left) is type(right) and left == right


def message_kinds() -> list[type]:
    return [cls for _, cls in sorted(protocol.registered_kinds().items())]


def describe(frame: bytes) -> str:
    """A garbage record for a report: its kind's name and its fields."""
    values = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    if type(values) is not list or not values or protocol.registered_kinds().get(values[0]) is None:
        return repr(values)[:200]
    cls = protocol.registered_kinds()[values[0]]
    shown = ", ".join(f"{name}={value!r:.60}" for name, value in zip(cls.FIELDS, values[1:]))
    return f"{cls.__name__}({shown})"[:400]
