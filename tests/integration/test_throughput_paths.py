"""The fast paths: pipelined short tasks, batched submission and results, many refs at once."""

from __future__ import annotations

import os
import subprocess
import sys

import shoal


@shoal.remote
def ident(x):
    return x


def _warm_up_pipelining():
    # The node manager pipelines a function once it has seen that its calls are short.
    shoal.get([ident.remote(i) for i in range(200)])


def test_many_short_tasks_keep_their_results_in_order(cluster):
    _warm_up_pipelining()
    refs = [ident.remote(i) for i in range(30_000)]
    assert shoal.get(refs, timeout=120) == list(range(30_000))


def test_worker_dying_with_pipelined_tasks_queued(cluster, tmp_path):
    marker = str(tmp_path / "died")

    @shoal.remote(max_retries=2)
    def maybe_die(i, path):
        if i == 150 and not os.path.exists(path):
            open(path, "w").close()
            os._exit(1)
        return i

    shoal.get([maybe_die.remote(i, "unused") for i in range(100)])  # learn that it is short
    results = shoal.get([maybe_die.remote(i, marker) for i in range(300)], timeout=60)
    assert results == list(range(300))
    assert os.path.exists(marker)


def test_pipelined_tasks_cancelled_before_they_start(cluster):
    @shoal.remote
    def slow_then_fast(i):
        if i < 2:
            import time

            time.sleep(1)  # both workers busy: every later task is still queued
        return i

    shoal.get([slow_then_fast.remote(i) for i in range(2, 200)])  # learn that it is short
    refs = [slow_then_fast.remote(i) for i in range(50)]
    shoal.cancel(refs[-1])
    assert shoal.get(refs[:-1], timeout=30) == list(range(49))
    try:
        shoal.get(refs[-1], timeout=30)
    except shoal.exceptions.TaskCancelledError:
        pass
    else:
        raise AssertionError("a queued task that was cancelled still ran")


def test_wait_on_many_finished_refs(cluster):
    refs = [ident.remote(i) for i in range(5_000)]
    shoal.get(refs)
    ready, not_ready = shoal.wait(refs, num_returns=len(refs), timeout=30)
    assert len(ready) == 5_000 and not_ready == []


def test_benchmark_smoke_run():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.core", "--smoke", "--impl", "shoal", "--reps", "1"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for workload in (
        "init",
        "idle_memory",
        "tasks_async",
        "task_roundtrip",
        "actor_async",
        "actor_roundtrip",
        "put_large",
        "get_large",
        "task_large_arg",
        "put_small",
        "chain",
        "wait_many",
        "fanout_nested",
    ):
        assert workload in result.stdout
