"""Tasks on a real local cluster: arguments, returns, nesting, errors, retries, resources."""

from __future__ import annotations

import os
import threading
import time

import pytest
import shoal
from shoal import exceptions

from tests.waiting import wait_for


@shoal.remote
def echo(*args, **kwargs):
    return args, kwargs


def test_args_kwargs_and_top_level_refs_are_resolved(cluster):
    ref = shoal.put(41)
    args, kwargs = shoal.get(echo.remote(1, ref, key=ref, other="x"))
    assert args == (1, 41)
    assert kwargs == {"key": 41, "other": "x"}


def test_nested_refs_pass_through_as_refs(cluster):
    inner = shoal.put("inner value")

    @shoal.remote
    def look(container):
        (ref,) = container
        assert isinstance(ref, shoal.ObjectRef)
        return shoal.get(ref)

    assert shoal.get(look.remote([inner])) == "inner value"


def test_ref_argument_waits_for_its_producer(cluster):
    @shoal.remote
    def slow(x):
        time.sleep(0.3)
        return x + 1

    @shoal.remote
    def double(x):
        return 2 * x

    assert shoal.get(double.remote(slow.remote(1))) == 4


def test_chain_of_dependent_tasks(cluster):
    @shoal.remote
    def inc(x):
        return x + 1

    ref = shoal.put(0)
    for _ in range(50):
        ref = inc.remote(ref)
    assert shoal.get(ref) == 50


def test_num_returns(cluster):
    @shoal.remote(num_returns=3)
    def three():
        return 1, 2, 3

    a, b, c = three.remote()
    assert shoal.get([a, b, c]) == [1, 2, 3]

    @shoal.remote
    def nothing():
        return None

    assert nothing.options(num_returns=0).remote() is None

    bad = three.options(num_returns=2).remote()
    with pytest.raises(ValueError, match="num_returns=2"):
        shoal.get(bad)


def test_large_args_and_results(cluster):
    payload = b"x" * (3 * 1024 * 1024)

    @shoal.remote
    def size(data):
        return len(data)

    @shoal.remote
    def make(n):
        return b"y" * n

    assert shoal.get(size.remote(payload)) == len(payload)
    assert len(shoal.get(make.remote(2 * 1024 * 1024))) == 2 * 1024 * 1024


def test_nested_tasks_do_not_deadlock_the_pool(cluster):
    @shoal.remote
    def leaf(i):
        return i

    @shoal.remote
    def parent(n):
        return sum(shoal.get([leaf.remote(i) for i in range(n)]))

    # More blocked parents than CPUs: each lends its CPU back while it waits.
    assert shoal.get([parent.remote(10) for _ in range(6)], timeout=60) == [45] * 6


def test_recursive_tasks(cluster):
    @shoal.remote
    def fib(n):
        if n < 2:
            return n
        return sum(shoal.get([fib.remote(n - 1), fib.remote(n - 2)]))

    assert shoal.get(fib.remote(7), timeout=60) == 13


def test_application_error_is_ray_task_error_and_cause_type(cluster):
    @shoal.remote
    def fail():
        raise ValueError("bad value here")

    with pytest.raises(ValueError) as info:
        shoal.get(fail.remote())
    assert isinstance(info.value, exceptions.RayTaskError)
    assert "bad value here" in str(info.value)
    assert "fail" in str(info.value)
    assert "test_tasks.py" in str(info.value) and "in fail" in str(info.value)


class CustomError(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")
        self.a = a


def test_custom_exception_with_custom_init(cluster):
    @shoal.remote
    def fail():
        raise CustomError(1, 2)

    with pytest.raises(CustomError) as info:
        shoal.get(fail.remote())
    assert info.value.a == 1


def test_error_propagates_through_dependent_task(cluster):
    @shoal.remote
    def fail():
        raise KeyError("missing")

    @shoal.remote
    def use(x):
        return x

    with pytest.raises(KeyError):
        shoal.get(use.remote(fail.remote()))


def test_application_errors_not_retried_without_retry_exceptions(cluster, tmp_path):
    counter = tmp_path / "count"

    @shoal.remote(max_retries=3)
    def flaky(path):
        with open(path, "a") as handle:
            handle.write("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        shoal.get(flaky.remote(str(counter)))
    assert counter.read_text() == "x"


def test_retry_exceptions(cluster, tmp_path):
    counter = tmp_path / "count"

    @shoal.remote(max_retries=3, retry_exceptions=True)
    def flaky(path):
        with open(path, "a") as handle:
            handle.write("x")
        if len(open(path).read()) < 3:
            raise RuntimeError("not yet")
        return "ok"

    assert shoal.get(flaky.remote(str(counter))) == "ok"
    assert counter.read_text() == "xxx"

    other = tmp_path / "other"

    @shoal.remote(max_retries=3, retry_exceptions=[KeyError])
    def wrong_kind(path):
        with open(path, "a") as handle:
            handle.write("x")
        raise RuntimeError("not retried")

    with pytest.raises(RuntimeError):
        shoal.get(wrong_kind.remote(str(other)))
    assert other.read_text() == "x"


def test_worker_death_is_retried(cluster, tmp_path):
    marker = tmp_path / "died-once"

    @shoal.remote(max_retries=2)
    def die_once(path):
        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(1)
        return "survived"

    assert shoal.get(die_once.remote(str(marker)), timeout=60) == "survived"


def test_worker_death_without_retries_raises_worker_crashed(cluster):
    @shoal.remote(max_retries=0)
    def die():
        os._exit(3)

    with pytest.raises(exceptions.WorkerCrashedError) as info:
        shoal.get(die.remote(), timeout=60)
    message = str(info.value)
    assert "die" in message and "pid" in message


def test_cancel_interrupts_sleep_promptly(cluster):
    @shoal.remote
    def sleeper():
        time.sleep(60)

    ref = sleeper.remote()
    time.sleep(0.5)
    started = time.monotonic()
    shoal.cancel(ref)
    with pytest.raises(exceptions.TaskCancelledError):
        shoal.get(ref, timeout=10)
    assert time.monotonic() - started < 3


def test_force_cancel_kills_the_worker(cluster):
    @shoal.remote
    def busy():
        while True:
            pass

    ref = busy.remote()
    time.sleep(0.5)
    shoal.cancel(ref, force=True)
    with pytest.raises(exceptions.TaskCancelledError):
        shoal.get(ref, timeout=10)


def test_cancel_while_a_task_is_starting_is_not_lost(cluster, tmp_path):
    """A cancel that reaches the worker after it took the task but before the task's own code
    runs (here: while its argument unpickles) still stops it."""
    marker = tmp_path / "unpickling"

    def slow_to_unpickle(path):
        open(path, "w").close()
        time.sleep(2)
        return path

    class SlowArgument:
        def __reduce__(self):
            return (slow_to_unpickle, (str(marker),))

    @shoal.remote(max_retries=0)
    def body(argument):
        time.sleep(60)

    ref = body.remote(SlowArgument())
    try:
        wait_for(marker.exists, 30)
        shoal.cancel(ref)
        with pytest.raises(exceptions.TaskCancelledError):
            shoal.get(ref, timeout=20)
    finally:
        shoal.cancel(ref, force=True)


def test_cancel_queued_task(cluster):
    @shoal.remote(num_cpus=2)
    def hog():
        time.sleep(1)
        return "hog"

    @shoal.remote(num_cpus=2)
    def waiting():
        return "ran"

    first = hog.remote()
    second = waiting.remote()
    shoal.cancel(second)
    with pytest.raises(exceptions.TaskCancelledError):
        shoal.get(second, timeout=10)
    assert shoal.get(first, timeout=10) == "hog"


def test_recursive_cancel_reaches_children(cluster):
    @shoal.remote
    def child():
        time.sleep(60)

    @shoal.remote
    def parent():
        return shoal.get(child.remote())

    ref = parent.remote()
    time.sleep(1.0)
    shoal.cancel(ref, recursive=True)
    with pytest.raises(exceptions.TaskCancelledError):
        shoal.get(ref, timeout=10)


def test_get_timeout(cluster):
    @shoal.remote
    def slow():
        time.sleep(2)

    ref = slow.remote()
    with pytest.raises(exceptions.GetTimeoutError):
        shoal.get(ref, timeout=0.1)
    assert shoal.get(ref, timeout=10) is None


def test_infeasible_request_warns_once_and_stays_pending(cluster):
    @shoal.remote(resources={"unobtainium": 1})
    def never():
        return 1

    with pytest.warns(UserWarning, match="unobtainium"):
        ref = never.remote()
    ready, not_ready = shoal.wait([ref], timeout=0.5)
    assert ready == [] and not_ready == [ref]
    shoal.cancel(ref)


def test_custom_resources_and_gpus(cluster):
    @shoal.remote(num_gpus=1)
    def gpu_task():
        return shoal.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

    ids, visible = shoal.get(gpu_task.remote())
    assert len(ids) == 1 and visible == str(ids[0])

    @shoal.remote(num_gpus=2)
    def two():
        return sorted(shoal.get_gpu_ids())

    assert shoal.get(two.remote()) == [0, 1]

    @shoal.remote(resources={"custom": 1})
    def custom():
        return shoal.get_runtime_context().get_assigned_resources()

    assert shoal.get(custom.remote())["custom"] == 1


def test_runtime_env_vars_per_task(cluster):
    @shoal.remote(runtime_env={"env_vars": {"SHOAL_TEST_VAR": "hello"}})
    def read():
        return os.environ.get("SHOAL_TEST_VAR")

    @shoal.remote
    def read_plain():
        return os.environ.get("SHOAL_TEST_VAR")

    assert shoal.get(read.remote()) == "hello"
    assert shoal.get(read_plain.remote()) is None


def test_runtime_context_inside_task(cluster):
    @shoal.remote(name="named-task")
    def context():
        ctx = shoal.get_runtime_context()
        return ctx.get_task_id(), ctx.get_task_name(), ctx.get_node_id(), ctx.get_worker_id()

    task_id, name, node_id, worker_id = shoal.get(context.remote())
    assert task_id and node_id == shoal.get_runtime_context().get_node_id()
    assert name == "named-task"
    assert worker_id


def test_cluster_queries(cluster):
    total = shoal.cluster_resources()
    assert total["CPU"] == 2 and total["GPU"] == 2 and total["custom"] == 1
    assert "object_store_memory" in total
    assert shoal.available_resources()["CPU"] <= 2
    (node,) = shoal.nodes()
    assert node["Alive"] and node["Resources"]["CPU"] == 2


def test_unpicklable_argument_and_result(cluster):
    @shoal.remote
    def take(x):
        return 1

    with pytest.raises(TypeError, match="lock"):
        take.remote(threading.Lock())

    @shoal.remote
    def give():
        return threading.Lock()

    with pytest.raises(Exception, match="lock"):
        shoal.get(give.remote())


def test_many_tasks_from_threads(cluster):
    @shoal.remote
    def ident(x):
        return x

    results = {}

    def run(offset):
        results[offset] = shoal.get([ident.remote(offset + i) for i in range(200)])

    threads = [threading.Thread(target=run, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for k in range(4):
        assert results[k * 1000] == [k * 1000 + i for i in range(200)]


def test_scheduling_strategies(cluster):
    from shoal.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = shoal.get_runtime_context().get_node_id()

    @shoal.remote
    def where():
        return shoal.get_runtime_context().get_node_id()

    assert shoal.get(where.options(scheduling_strategy="SPREAD").remote()) == here
    assert shoal.get(where.options(scheduling_strategy="DEFAULT").remote()) == here
    strategy = NodeAffinitySchedulingStrategy(here, soft=False)
    assert shoal.get(where.options(scheduling_strategy=strategy).remote()) == here
    elsewhere = "ab" * 16
    soft = NodeAffinitySchedulingStrategy(elsewhere, soft=True)
    assert shoal.get(where.options(scheduling_strategy=soft).remote()) == here
    hard = NodeAffinitySchedulingStrategy(elsewhere, soft=False)
    with pytest.raises(exceptions.TaskUnschedulableError, match="not alive"):
        shoal.get(where.options(scheduling_strategy=hard).remote(), timeout=30)

    @shoal.remote
    class Pinned:
        def node(self):
            return shoal.get_runtime_context().get_node_id()

    assert shoal.get(Pinned.options(scheduling_strategy=strategy).remote().node.remote()) == here
    with pytest.raises(exceptions.ActorUnschedulableError):
        shoal.get(Pinned.options(scheduling_strategy=hard).remote().node.remote(), timeout=30)
    with pytest.raises(ValueError, match="scheduling_strategy"):
        where.options(scheduling_strategy="NOWHERE")
    with pytest.raises(ValueError):
        NodeAffinitySchedulingStrategy("not hex", soft=False)


def test_worker_standard_streams_are_sane(cluster):
    @shoal.remote
    def streams():
        print("", flush=True)  # an empty write must not fail
        os.write(1, b"native output goes to the worker log\n")
        return os.readlink("/proc/self/fd/0"), os.readlink("/proc/self/fd/1"), os.readlink("/proc/self/fd/2")

    stdin, stdout, stderr = shoal.get(streams.remote())
    assert stdin == "/dev/null"
    assert stdout.endswith(".log") and stderr == stdout
