"""The benchmark workloads, written once against the Ray API and run on Ray and on shoal.

Each `name(ray, smoke) -> dict` takes the implementation module (`ray` or `shoal`), starts and
stops its own cluster with `init(num_cpus=2)`, and returns its metrics (plus an optional
"details" dict that is kept in the raw JSON but not tabulated). Task and actor bodies are nested
functions so they are pickled by value: workers never need to import this module. Nothing heavy
is imported at module level, so the child can time `import <implementation>` on its own.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

NUM_CPUS = 2
LARGE_ARRAY_BYTES = 100 * 10**6  # 100 MB of float64
SMOKE_FACTOR = 100
LARGE_REPEATS = 5


@dataclass(frozen=True)
class MetricSpec:
    """How to print and score one metric: `better` is "lower", "higher" or "" (a fact)."""

    unit: str
    better: str


METRICS: dict[str, MetricSpec] = {
    "import_s": MetricSpec("s", "lower"),
    "init_s": MetricSpec("s", "lower"),
    "init_to_result_s": MetricSpec("s", "lower"),
    "pss_mb": MetricSpec("MB", "lower"),
    "rss_mb": MetricSpec("MB", "lower"),
    "processes": MetricSpec("count", "lower"),
    "tasks_per_s": MetricSpec("tasks/s", "higher"),
    "calls_per_s": MetricSpec("calls/s", "higher"),
    "ops_per_s": MetricSpec("ops/s", "higher"),
    "gb_per_s": MetricSpec("GB/s", "higher"),
    "median_us": MetricSpec("us", "lower"),
    "p90_us": MetricSpec("us", "lower"),
    "median_s": MetricSpec("s", "lower"),
    "total_s": MetricSpec("s", "lower"),
    "read_only": MetricSpec("bool", ""),
    "zero_copy": MetricSpec("bool", ""),
}


def scaled(count: int, smoke: bool, minimum: int = 1) -> int:
    """`count`, or about 1/100 of it in smoke mode."""
    return max(minimum, count // SMOKE_FACTOR) if smoke else count


def large_array(smoke: bool):
    """A touched float64 array of 100 MB (1 MB in smoke mode)."""
    import numpy as np

    return np.arange(scaled(LARGE_ARRAY_BYTES, smoke) // 8, dtype=np.float64)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile; `fraction` in (0, 1]."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def latencies_us(call: Callable[[], object], count: int) -> list[float]:
    """Wall time of `count` sequential calls, in microseconds."""
    latencies = []
    for _ in range(count):
        start = time.perf_counter_ns()
        call()
        latencies.append((time.perf_counter_ns() - start) / 1000)
    return latencies


def latency_metrics(latencies: list[float]) -> dict:
    """median_us and p90_us of per-call latencies."""
    return {"median_us": statistics.median(latencies), "p90_us": percentile(latencies, 0.9)}


@contextlib.contextmanager
def _cluster(ray) -> Iterator[None]:
    """init(num_cpus=2), one trivial task so the timed part excludes start-up, then shutdown."""
    ray.init(num_cpus=NUM_CPUS)
    try:

        @ray.remote
        def warm_up():
            return None

        ray.get(warm_up.remote())
        yield
    finally:
        ray.shutdown()


def init(ray, smoke: bool) -> dict:
    """From `init(num_cpus=2)` to the first trivial task's result (the child adds import_s)."""

    @ray.remote
    def trivial():
        return 1

    start = time.perf_counter()
    ray.init(num_cpus=NUM_CPUS)
    initialised = time.perf_counter()
    try:
        assert ray.get(trivial.remote()) == 1
        first_result = time.perf_counter()
    finally:
        shutdown_start = time.perf_counter()
        ray.shutdown()
    return {
        "init_s": initialised - start,
        "init_to_result_s": first_result - start,
        "details": {"shutdown_s": time.perf_counter() - shutdown_start},
    }


def idle_memory(ray, smoke: bool) -> dict:
    """PSS/RSS over the driver and every process the runtime started, 3 s after one task."""
    from benchmarks import machine

    settle_s = 1.0 if smoke else 3.0
    with _cluster(ray):
        time.sleep(settle_s)
        usage = machine.process_memory(os.getpid())
    return {
        "pss_mb": usage.pss_mb,
        "rss_mb": usage.rss_mb,
        "processes": usage.processes,
        "details": {
            "settle_s": settle_s,
            "uss_mb": usage.uss_mb,
            "reparented_processes": usage.reparented,
            "by_process": usage.by_process,
        },
    }


def tasks_async(ray, smoke: bool) -> dict:
    """20,000 no-op tasks submitted, then all results fetched."""
    count = scaled(20_000, smoke)
    with _cluster(ray):

        @ray.remote
        def noop():
            return None

        ray.get([noop.remote() for _ in range(scaled(300, smoke, 3))])
        start = time.perf_counter()
        refs = [noop.remote() for _ in range(count)]
        submitted = time.perf_counter()
        ray.get(refs)
        elapsed_s = time.perf_counter() - start
    return {
        "tasks_per_s": count / elapsed_s,
        "details": {"count": count, "submit_s": submitted - start},
    }


def task_roundtrip(ray, smoke: bool) -> dict:
    """2,000 sequential `get(f.remote())`."""
    count = scaled(2_000, smoke)
    with _cluster(ray):

        @ray.remote
        def noop():
            return None

        latencies_us(lambda: ray.get(noop.remote()), scaled(100, smoke, 5))
        latencies = latencies_us(lambda: ray.get(noop.remote()), count)
    return {**latency_metrics(latencies), "details": {"count": count}}


def _echo_actor(ray):
    @ray.remote
    class Echo:
        def noop(self):
            return None

    actor = Echo.remote()
    ray.get(actor.noop.remote())
    return actor


def actor_async(ray, smoke: bool) -> dict:
    """20,000 calls to one actor's no-op method, then get all."""
    count = scaled(20_000, smoke)
    with _cluster(ray):
        actor = _echo_actor(ray)
        ray.get([actor.noop.remote() for _ in range(scaled(300, smoke, 3))])
        start = time.perf_counter()
        refs = [actor.noop.remote() for _ in range(count)]
        submitted = time.perf_counter()
        ray.get(refs)
        elapsed_s = time.perf_counter() - start
    return {
        "calls_per_s": count / elapsed_s,
        "details": {"count": count, "submit_s": submitted - start},
    }


def actor_roundtrip(ray, smoke: bool) -> dict:
    """2,000 sequential calls to one actor's no-op method."""
    count = scaled(2_000, smoke)
    with _cluster(ray):
        actor = _echo_actor(ray)
        latencies_us(lambda: ray.get(actor.noop.remote()), scaled(100, smoke, 5))
        latencies = latencies_us(lambda: ray.get(actor.noop.remote()), count)
    return {**latency_metrics(latencies), "details": {"count": count}}


def put_large(ray, smoke: bool) -> dict:
    """`put` of a 100 MB float64 array; median of 5, the ref deleted between puts."""
    array = large_array(smoke)
    durations_s = []
    with _cluster(ray):
        for _ in range(LARGE_REPEATS):
            start = time.perf_counter()
            ref = ray.put(array)
            durations_s.append(time.perf_counter() - start)
            del ref
    return {
        "gb_per_s": array.nbytes / 1e9 / statistics.median(durations_s),
        "details": {"size_bytes": array.nbytes, "durations_s": durations_s},
    }


def get_large(ray, smoke: bool) -> dict:
    """`get` of a put 100 MB array (median of 5), and whether the result is a read-only view."""
    array = large_array(smoke)
    durations_us = []
    with _cluster(ray):
        ref = ray.put(array)
        for _ in range(LARGE_REPEATS):
            start = time.perf_counter_ns()
            result = ray.get(ref)
            durations_us.append((time.perf_counter_ns() - start) / 1000)
            assert result.shape == array.shape and result[-1] == array[-1]
            read_only = not result.flags.writeable
            has_base = result.base is not None
            del result
        del ref
    return {
        "median_us": statistics.median(durations_us),
        "read_only": read_only,
        "zero_copy": read_only and has_base,
        "details": {"size_bytes": array.nbytes, "durations_us": durations_us, "has_base": has_base},
    }


def task_large_arg(ray, smoke: bool) -> dict:
    """The put 100 MB array's ref passed to a task that sums it (median of 5)."""
    array = large_array(smoke)
    expected = float(array.sum())
    durations_s = []
    with _cluster(ray):

        @ray.remote
        def total(values):
            return float(values.sum())

        # Workers import numpy and receive the function before the timed calls.
        ray.get([total.remote(array[:8]) for _ in range(NUM_CPUS)])
        ref = ray.put(array)
        for _ in range(LARGE_REPEATS):
            start = time.perf_counter()
            result = ray.get(total.remote(ref))
            durations_s.append(time.perf_counter() - start)
            assert result == expected
        del ref
    return {
        "median_s": statistics.median(durations_s),
        "details": {"size_bytes": array.nbytes, "durations_s": durations_s},
    }


def put_small(ray, smoke: bool) -> dict:
    """10,000 `put` of small dicts, refs kept alive until the end."""
    count = scaled(10_000, smoke)
    payloads = [{"index": i, "name": f"item-{i}", "tags": ["a", "b"], "value": i * 0.5} for i in range(count)]
    with _cluster(ray):
        start = time.perf_counter()
        refs = [ray.put(payload) for payload in payloads]
        elapsed_s = time.perf_counter() - start
        del refs
    return {"ops_per_s": count / elapsed_s, "details": {"count": count}}


def chain(ray, smoke: bool) -> dict:
    """1,000 dependent tasks, each taking the previous task's ref."""
    length = scaled(1_000, smoke)
    with _cluster(ray):

        @ray.remote
        def step(value):
            return value + 1

        ray.get(step.remote(step.remote(0)))
        start = time.perf_counter()
        ref = step.remote(0)
        for _ in range(length - 1):
            ref = step.remote(ref)
        result = ray.get(ref)
        elapsed_s = time.perf_counter() - start
    assert result == length
    return {"total_s": elapsed_s, "details": {"length": length}}


def wait_many(ray, smoke: bool) -> dict:
    """`wait(refs, num_returns=len(refs))` over 10,000 refs whose tasks already finished."""
    count = scaled(10_000, smoke)
    with _cluster(ray):

        @ray.remote
        def identity(value):
            return value

        refs = [identity.remote(i) for i in range(count)]
        ray.get(refs)
        start = time.perf_counter()
        ready, pending = ray.wait(refs, num_returns=len(refs))
        elapsed_s = time.perf_counter() - start
    assert len(ready) == count and not pending
    return {"total_s": elapsed_s, "details": {"count": count}}


def fanout_nested(ray, smoke: bool) -> dict:
    """20 parent tasks at once, each submitting 100 child tasks and getting them."""
    parents, children = (4, 5) if smoke else (20, 100)
    with _cluster(ray):

        @ray.remote
        def leaf(value):
            return value

        @ray.remote
        def parent(count):
            return sum(ray.get([leaf.remote(i) for i in range(count)]))

        start = time.perf_counter()
        results = ray.get([parent.remote(children) for _ in range(parents)])
        elapsed_s = time.perf_counter() - start
    assert results == [children * (children - 1) // 2] * parents
    return {"total_s": elapsed_s, "details": {"parents": parents, "children": children}}


CLUSTER_STORE_BYTES = 512 * 1024 * 1024


def _three_nodes(ray):
    """A head and two nodes of one CPU each on this machine, with `cluster_utils.Cluster`
    (`ray.cluster_utils` / `shoal.cluster_utils`); returns the cluster, connected."""
    import importlib

    cluster_utils = importlib.import_module(ray.__name__ + ".cluster_utils")
    cluster = cluster_utils.Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": CLUSTER_STORE_BYTES}
    )
    for name in ("node_a", "node_b"):
        cluster.add_node(num_cpus=1, resources={name: 1}, object_store_memory=CLUSTER_STORE_BYTES)
    cluster.wait_for_nodes()
    return cluster


def cluster_start(ray, smoke: bool) -> dict:
    """Start three local nodes (head + 2), connect, and run one task on another node."""

    @ray.remote(resources={"node_b": 1})
    def trivial():
        return 1

    start = time.perf_counter()
    cluster = _three_nodes(ray)
    try:
        ray.init(address=cluster.address)
        assert ray.get(trivial.remote()) == 1
        elapsed = time.perf_counter() - start
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {"total_s": elapsed}


def cross_node_get(ray, smoke: bool) -> dict:
    """`get` on the head of a 100 MB array made by a task on another node (median of 5)."""
    size = scaled(LARGE_ARRAY_BYTES, smoke) // 8

    @ray.remote(resources={"node_a": 1})
    def make(count, fill):
        import numpy as np

        return np.full(count, fill, dtype=np.float64)

    durations = []
    cluster = _three_nodes(ray)
    try:
        ray.init(address=cluster.address)
        for repeat in range(LARGE_REPEATS):
            ref = make.remote(size, float(repeat))
            ray.wait([ref], fetch_local=False)
            start = time.perf_counter()
            result = ray.get(ref)
            durations.append(time.perf_counter() - start)
            assert result.shape == (size,) and result[-1] == repeat
            del result, ref
    finally:
        ray.shutdown()
        cluster.shutdown()
    median = statistics.median(durations)
    return {"median_s": median, "gb_per_s": size * 8 / median / 1e9, "details": {"durations_s": durations}}


def cluster_tasks(ray, smoke: bool) -> dict:
    """300 tasks of 10 ms submitted at once on three one-CPU nodes: the ideal is 1 s."""
    count = scaled(300, smoke, minimum=30)

    @ray.remote
    def work(seconds):
        time.sleep(seconds)
        return ray.get_runtime_context().get_node_id()

    cluster = _three_nodes(ray)
    try:
        ray.init(address=cluster.address)
        ray.get([work.remote(0) for _ in range(6)])
        start = time.perf_counter()
        where = ray.get([work.remote(0.01) for _ in range(count)])
        elapsed = time.perf_counter() - start
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {"tasks_per_s": count / elapsed, "details": {"nodes_used": len(set(where)), "elapsed_s": elapsed}}


WORKLOADS: dict[str, Callable[..., dict]] = {
    workload.__name__: workload
    for workload in (
        init,
        idle_memory,
        tasks_async,
        task_roundtrip,
        actor_async,
        actor_roundtrip,
        put_large,
        get_large,
        task_large_arg,
        put_small,
        chain,
        wait_many,
        fanout_nested,
        cluster_start,
        cross_node_get,
        cluster_tasks,
    )
}
