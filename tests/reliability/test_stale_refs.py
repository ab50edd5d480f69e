"""(11) Refs that outlived their cluster: after `shoal.shutdown()` every kind of ref (small and
large puts, task and actor results, refs nested in values) fails at once with OwnerDiedError,
in `get` and in `wait`, and again after a fresh `shoal.init()`, where passing one to a task must
fail that task rather than leave it waiting forever. No wait here is unbounded: a hang shows up
as GetTimeoutError and is counted.
"""

from __future__ import annotations

import numpy as np
import shoal

STALE_TIMEOUT_S = 10.0  # far longer than failing at once takes


@shoal.remote
def echo(value):
    return value


@shoal.remote
class Echo:
    def echo(self, value):
        return value


def _make_refs(count: int) -> list:
    actor = Echo.remote()
    makers = (
        lambda index: shoal.put(index),
        lambda index: shoal.put(np.full(20_000, index)),  # 160 kB: in the shared store
        lambda index: echo.remote(index),
        lambda index: echo.remote(np.full(20_000, index)),
        lambda index: actor.echo.remote(index),
        lambda index: shoal.get(shoal.put([shoal.put(index)]))[0],  # a ref that came out of a value
    )
    refs = [makers[index % len(makers)](index) for index in range(count)]
    shoal.wait(refs, num_returns=len(refs), timeout=60, fetch_local=False)
    return refs


def _fails_at_once(call, *args, **kwargs) -> str:
    """How `call(*args, **kwargs)` ended: "owner died" (right), "hang", or whatever else came out."""
    try:
        call(*args, **kwargs)
    except shoal.exceptions.GetTimeoutError:
        return "hang"
    except shoal.exceptions.OwnerDiedError:
        return "owner died"
    except shoal.exceptions.ObjectLostError as error:  # wait() says the ref's cluster is gone
        return "owner died" if "shut down" in str(error) else f"ObjectLostError: {error}"[:120]
    except Exception as error:
        return f"{type(error).__name__}: {error}"[:120]
    return "returned a value"


def _tally(figures, outcomes: list[str], where: str) -> None:
    figures.results += len(outcomes)
    figures.correct += outcomes.count("owner died")
    figures.hangs += outcomes.count("hang")
    others = sorted({outcome for outcome in outcomes if outcome not in ("owner died", "hang")})
    if others or "hang" in outcomes:
        figures.note(f"{where}: {outcomes.count('hang')} hangs, other outcomes {others[:3]}")


def test_stale_refs_fail_at_once_after_shutdown(chaos_scale, figures):
    figures.input_kind = "stale refs"
    figures.parameters = {"refs": chaos_scale.stale_refs, "kinds": 6}
    shoal.init(num_cpus=2)
    try:
        refs = _make_refs(chaos_scale.stale_refs)
    finally:
        shoal.shutdown()
    figures.inputs = len(refs)
    _tally(figures, [_fails_at_once(shoal.get, ref, timeout=STALE_TIMEOUT_S) for ref in refs], "get")
    sample = refs[:: max(1, len(refs) // 60)]
    _tally(figures, [_fails_at_once(shoal.wait, [ref], timeout=STALE_TIMEOUT_S) for ref in sample], "wait")
    assert not shoal.is_initialized(), "a stale ref started a cluster"
    shoal.init(num_cpus=2)  # a new session: the old refs are still stale there
    try:
        in_new = [_fails_at_once(shoal.get, ref, timeout=STALE_TIMEOUT_S) for ref in sample]
        _tally(figures, in_new, "get, new session")
    finally:
        shoal.shutdown()
    assert figures.hangs == 0 and figures.correct == figures.results, figures.notes


def test_a_stale_ref_passed_to_a_task_is_refused_at_the_call(chaos_scale, figures):
    """In a new session, a task whose argument is a ref of the old one is refused with OwnerDiedError.

    The call itself raises: submitted, the task would wait for an object nobody will make.
    """
    figures.input_kind = "stale refs as task arguments"
    shoal.init(num_cpus=2)
    try:
        refs = _make_refs(12)  # two of each kind
    finally:
        shoal.shutdown()
    figures.parameters = {"tasks": len(refs), "kinds": 6}
    shoal.init(num_cpus=2)
    try:
        figures.inputs = len(refs)
        outcomes = [_fails_at_once(echo.remote, ref) for ref in refs]
        _tally(figures, outcomes, "task argument, new session")
        assert shoal.get(echo.remote(5), timeout=STALE_TIMEOUT_S) == 5  # and the new session works
    finally:
        shoal.shutdown()
    assert figures.hangs == 0 and figures.correct == figures.results, figures.notes
