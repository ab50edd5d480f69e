"""(7) Raw garbage to every port a node listens on, and (8) typed garbage (every message kind,
fields replaced by wrong values) sent unauthenticated to the ipc control socket and the data
port. After each batch the node must still be alive and running its loop; at the end it must
still run a job for a driver that connects over TCP with the token.

A node that dies is restarted (see fuzzing.FuzzTarget) so that every batch gets tried; the
kinds or ports that killed it are in the figures' notes, with the log lines of the death.
"""

from __future__ import annotations

import random

import shoal
import zmq

from tests.reliability import fuzzing

MAX_RESTARTS = 8  # after this many deaths the scenario stops trying: it has failed anyway
KINDS_PER_CHECK = 15  # message kinds sent between two checks that the node settled
JOB_TIMEOUT_S = 60.0


@shoal.remote
def cube(index):
    return index**3


def _still_serves(target, figures, tasks: int = 200) -> None:
    """A driver over TCP (CURVE, with the token) runs a job on the fuzzed node; values checked."""
    shoal.init(address=target.tcp_address, _token=target.token)
    try:
        values = shoal.get([cube.remote(index) for index in range(tasks)], timeout=JOB_TIMEOUT_S)
    finally:
        shoal.shutdown()
    figures.results += tasks
    figures.correct += sum(value == index**3 for index, value in enumerate(values))


def _after_batch(target, figures, what: str, messages: int = 0) -> bool:
    """Whether the node took a batch; one that died or hung is counted, noted and restarted."""
    state = target.settled(messages)
    if state == "ok":
        return True
    figures.crashes += state == "crashed"
    figures.hangs += state == "hung"
    figures.note(f"{what}: node {state}")
    target.restart()
    last_lines = [line.strip() for line in target.crash_logs[-1].splitlines() if line.strip()][-4:]
    if last_lines:
        figures.note("  its log ends: " + " / ".join(last_lines))
    return False


def _out_of_restarts(figures) -> bool:
    return figures.crashes + figures.hangs >= MAX_RESTARTS


def test_raw_garbage_to_every_port(target, chaos_scale, figures):
    rng = random.Random(7)
    figures.input_kind = "raw writes"
    figures.parameters = {"ports": sorted(target.ports()), "inputs_per_port": chaos_scale.raw_inputs_per_port}
    for name in sorted(target.ports()):
        port = target.ports()[name]
        refused = 0
        for payload in fuzzing.raw_inputs(rng, chaos_scale.raw_inputs_per_port):
            if fuzzing.send_raw(port, payload):
                figures.inputs += 1
            else:
                refused += 1
                if refused > 10:
                    break
        if refused:
            figures.note(f"{name}: {refused} connections refused")
        if not _after_batch(target, figures, f"raw garbage to {name}") and _out_of_restarts(figures):
            break
    _still_serves(target, figures)
    assert figures.crashes == 0 and figures.hangs == 0, figures.notes
    assert figures.inputs == 4 * chaos_scale.raw_inputs_per_port, figures.notes
    assert figures.correct == figures.results, figures.notes


def _send_frames(endpoint: str, frames) -> int:
    """Send each frame as one message from its own unregistered DEALER (so that no message is
    overwritten by the next from the same client); returns how many were sent.

    The sockets live in a context of their own, ended before this returns: ending it waits
    until every message is out (or the linger ran out), so a check that follows sees them all.
    """
    context = zmq.Context()
    context.set(zmq.MAX_SOCKETS, len(frames) + 16)
    sent = 0
    try:
        for frame in frames:
            dealer = context.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 2000)
            dealer.setsockopt(zmq.IDENTITY, random.randbytes(16))
            dealer.connect(endpoint)
            try:
                dealer.send(frame)
                sent += 1
            finally:
                dealer.close()
    finally:
        context.term()
    return sent


def _fuzz_kinds(target, figures, port_name: str, batches: dict, name_the_killers: bool) -> list[str]:
    """Send each kind's garbage to one port, a group of kinds per check; with `name_the_killers` a
    group the node did not survive is sent again kind by kind, and a kind that kills it alone is
    halved down to one message. Returns the kinds that kill it."""
    culprits = []
    names = list(batches)
    for start in range(0, len(names), KINDS_PER_CHECK):
        group = names[start : start + KINDS_PER_CHECK]
        sent = sum(_send_frames(target.ports()[port_name].zmq_endpoint, batches[name]) for name in group)
        figures.inputs += sent
        if _after_batch(target, figures, f"{group[0]}..{group[-1]} to {port_name}", sent) or not name_the_killers:
            continue
        alone = []
        for name in group:
            _send_frames(target.ports()[port_name].zmq_endpoint, batches[name])
            if target.settled(len(batches[name])) != "ok":
                alone.append(name)
                target.restart()
                killer = _first_killer(target, port_name, batches[name])
                figures.note(
                    f"  {name} kills it; for one: {fuzzing.describe(killer) if killer else 'no single message'}"
                )
        figures.note(f"  of which these kill it alone: {alone or 'none'}")
        culprits += alone
        if _out_of_restarts(figures):
            break
    return culprits


def _first_killer(target, port_name: str, frames: list) -> bytes | None:
    """Halve a batch that kills the node until one message is left; None if none kills it alone."""
    candidates = frames
    while len(candidates) > 1:
        half = candidates[: len(candidates) // 2]
        _send_frames(target.ports()[port_name].zmq_endpoint, half)
        if target.settled(len(half)) == "ok":
            candidates = candidates[len(candidates) // 2 :]
        else:
            target.restart()
            candidates = half
    _send_frames(target.ports()[port_name].zmq_endpoint, candidates)
    if target.settled(1) == "ok":
        return None
    target.restart()
    return candidates[0]


def test_typed_garbage_to_the_ipc_socket_and_the_data_port(target, chaos_scale, figures):
    rng = random.Random(8)
    figures.input_kind = "typed messages"
    figures.parameters = {
        "kinds": len(fuzzing.message_kinds()),
        "wrong_values_per_field": min(chaos_scale.wrong_values_per_field, len(fuzzing.WRONG_VALUES)),
        "targets": ["ipc control", "tcp data"],
    }
    culprits = {}
    for port_name in ("ipc control", "tcp data"):
        batches = {
            cls.__name__: list(fuzzing.typed_garbage(cls, rng, chaos_scale.wrong_values_per_field))
            for cls in fuzzing.message_kinds()
        }
        culprits[port_name] = _fuzz_kinds(target, figures, port_name, batches, chaos_scale.name_the_killers)
    if chaos_scale.name_the_killers:
        figures.note(f"kinds that kill the node: {culprits}")
    _still_serves(target, figures)
    assert figures.crashes == 0 and figures.hangs == 0, "\n".join(figures.notes)
    assert figures.correct == figures.results
