"""Waiting in tests: poll a condition until it holds or a deadline passes.

Use `wait_for` instead of `time.sleep(...); assert ...`: it returns as soon as the condition
holds, and when it never does it fails with what `describe()` says about the state it last saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_FIRST_INTERVAL_S = 0.005
_MAX_INTERVAL_S = 0.1


def poll_until(predicate: Callable[[], T], timeout_s: float) -> T:
    """Call `predicate` until it returns something truthy or `timeout_s` passes.

    The predicate is called at least once, and once more at the deadline. The interval starts at
    5 ms and doubles up to 100 ms, so fast conditions cost little and slow ones little CPU.

    Returns:
        The predicate's last value: truthy if the condition held, falsy on timeout.
    """
    deadline = time.monotonic() + timeout_s
    interval_s = _FIRST_INTERVAL_S
    while True:
        value = predicate()
        remaining_s = deadline - time.monotonic()
        if value or remaining_s <= 0:
            return value
        time.sleep(min(interval_s, remaining_s))
        interval_s = min(interval_s * 2, _MAX_INTERVAL_S)


def wait_for(
    predicate: Callable[[], T],
    timeout_s: float,
    describe: Callable[[], str] | None = None,
) -> T:
    """Wait until `predicate()` is truthy and return its value.

    Args:
        predicate: called repeatedly; exceptions it raises propagate at once.
        timeout_s: how long to keep polling.
        describe: called once on timeout; its text (cluster state, log tails, ...) goes into the
            failure message.

    Raises:
        AssertionError: the predicate stayed falsy for `timeout_s`.

    Example:
        wait_for(lambda: not psutil.pid_exists(pid), 5, describe=lambda: f"pid {pid} lives")
    """
    value = poll_until(predicate, timeout_s)
    if value:
        return value
    name = getattr(predicate, "__qualname__", None) or repr(predicate)
    lines = [f"timed out after {timeout_s:g} s waiting for {name} (last value: {value!r})"]
    if describe is not None:
        try:
            lines.append(str(describe()))
        except Exception as error:  # the timeout is the failure to report, not describe's bug
            lines.append(f"describe() raised {error!r}")
    raise AssertionError("\n".join(lines))
