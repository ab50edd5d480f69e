"""The `mp` baseline: the same measurements on a bare multiprocessing.Pool(2), and np.copyto.

Only where such a floor means something: tasks_async, task_roundtrip, and put_large (whose
floor is one memory copy of the 100 MB array into an already-touched destination). Each
`name(smoke) -> dict` returns metrics named as in benchmarks.workloads, so the table lines up.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable

from benchmarks.workloads import (
    LARGE_REPEATS,
    NUM_CPUS,
    large_array,
    latencies_us,
    latency_metrics,
    scaled,
)


def _noop():
    return None


def tasks_async(smoke: bool) -> dict:
    """20,000 `apply_async(noop)` submitted, then every result fetched."""
    count = scaled(20_000, smoke)
    with multiprocessing.Pool(NUM_CPUS) as pool:
        for result in [pool.apply_async(_noop) for _ in range(scaled(300, smoke, 3))]:
            result.get()
        start = time.perf_counter()
        results = [pool.apply_async(_noop) for _ in range(count)]
        submitted = time.perf_counter()
        for result in results:
            result.get()
        elapsed_s = time.perf_counter() - start
    return {
        "tasks_per_s": count / elapsed_s,
        "details": {"count": count, "submit_s": submitted - start},
    }


def task_roundtrip(smoke: bool) -> dict:
    """2,000 sequential `pool.apply(noop)`."""
    count = scaled(2_000, smoke)
    with multiprocessing.Pool(NUM_CPUS) as pool:
        latencies_us(lambda: pool.apply(_noop), scaled(100, smoke, 5))
        latencies = latencies_us(lambda: pool.apply(_noop), count)
    return {**latency_metrics(latencies), "details": {"count": count}}


def numpy_copy(smoke: bool) -> dict:
    """np.copyto of the 100 MB array into a touched destination; median of 5."""
    import numpy as np

    source = large_array(smoke)
    destination = np.empty_like(source)
    destination.fill(0.0)  # touch every page: the copy must not pay for page faults
    durations_s = []
    for _ in range(LARGE_REPEATS):
        start = time.perf_counter()
        np.copyto(destination, source)
        durations_s.append(time.perf_counter() - start)
    assert destination[-1] == source[-1]
    return {
        "gb_per_s": source.nbytes / 1e9 / statistics.median(durations_s),
        "details": {
            "baseline": "numpy_copy",
            "size_bytes": source.nbytes,
            "durations_s": durations_s,
        },
    }


# Workload name -> its baseline.
BASELINES: dict[str, Callable[[bool], dict]] = {
    "tasks_async": tasks_async,
    "task_roundtrip": task_roundtrip,
    "put_large": numpy_copy,
}
