"""Actors on a real local cluster: state, ordering, concurrency, names, failures, restarts."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import shoal
from shoal import exceptions

from tests.waiting import wait_for


@shoal.remote
class Counter:
    def __init__(self, start=0):
        self.count = start

    def increment(self, value=1):
        self.count += value
        return self.count

    def get_count(self):
        return self.count

    def pid(self):
        return os.getpid()

    def fail(self):
        raise ValueError("method failed")

    def die(self):
        os._exit(1)


def test_seed_counter_example(cluster):
    counter = Counter.remote()
    for _ in range(10):
        counter.increment.remote(1)
    assert shoal.get(counter.get_count.remote()) == 10


def test_seed_counter_actor_example(cluster):
    @shoal.remote
    class CounterActor:
        def __init__(self):
            self.value = 0

        def increment(self):
            self.value += 1
            return self.value

        def get_value(self):
            return self.value

    counter_actor = CounterActor.remote()
    assert shoal.get(counter_actor.increment.remote()) == 1
    assert shoal.get(counter_actor.increment.remote()) == 2


def test_seed_base_class_actor(cluster):
    class MyActor(shoal.Actor):
        def __init__(self, value):
            self.value = value

        @shoal.remote
        def add(self, x, y):
            return self.value + x + y

    actor = MyActor.create(value=5)
    result = actor.add.remote(2, 3)
    assert result.get() == 10


def test_calls_run_in_submission_order(cluster):
    @shoal.remote
    class Log:
        def __init__(self):
            self.items = []

        def append(self, item):
            self.items.append(item)

        def items_so_far(self):
            return self.items

    log = Log.remote()
    for i in range(500):
        log.append.remote(i)
    assert shoal.get(log.items_so_far.remote()) == list(range(500))


def test_order_kept_when_an_argument_is_late(cluster):
    @shoal.remote
    def late(value):
        time.sleep(0.5)
        return value

    @shoal.remote
    class Log:
        def __init__(self):
            self.items = []

        def append(self, item):
            self.items.append(item)
            return list(self.items)

    log = Log.remote()
    log.append.remote(late.remote("first"))
    assert shoal.get(log.append.remote("second")) == ["first", "second"]


def test_each_actor_has_its_own_process(cluster):
    a, b = Counter.remote(), Counter.remote()
    pids = shoal.get([a.pid.remote(), b.pid.remote()])
    assert pids[0] != pids[1] and os.getpid() not in pids


def test_method_num_returns(cluster):
    @shoal.remote
    class Pair:
        @shoal.method(num_returns=2)
        def two(self):
            return 1, 2

        def three(self):
            return 1, 2, 3

    pair = Pair.remote()
    first, second = pair.two.remote()
    assert shoal.get([first, second]) == [1, 2]
    refs = pair.three.options(num_returns=3).remote()
    assert shoal.get(refs) == [1, 2, 3]


def test_method_error_keeps_actor_alive(cluster):
    counter = Counter.remote(5)
    with pytest.raises(ValueError, match="method failed") as info:
        shoal.get(counter.fail.remote())
    assert isinstance(info.value, exceptions.RayTaskError)
    assert shoal.get(counter.increment.remote()) == 6


def test_failing_constructor_makes_calls_raise_actor_died(cluster):
    @shoal.remote
    class Broken:
        def __init__(self):
            raise RuntimeError("constructor exploded")

        def ping(self):
            return "pong"

    broken = Broken.remote()
    with pytest.raises(exceptions.ActorDiedError) as info:
        shoal.get(broken.ping.remote(), timeout=30)
    assert isinstance(info.value, exceptions.RayActorError)
    assert "constructor exploded" in str(info.value)
    with pytest.raises(exceptions.ActorDiedError):
        shoal.get(broken.ping.remote(), timeout=30)


def test_async_actor_methods_overlap(cluster):
    @shoal.remote
    class Sleeper:
        async def nap(self, seconds):
            await asyncio.sleep(seconds)
            return seconds

    sleeper = Sleeper.remote()
    shoal.get(sleeper.nap.remote(0))
    started = time.monotonic()
    assert shoal.get([sleeper.nap.remote(1), sleeper.nap.remote(1)]) == [1, 1]
    assert time.monotonic() - started < 1.8


def test_threaded_actor_methods_overlap(cluster):
    @shoal.remote(max_concurrency=2)
    class Threaded:
        def nap(self, seconds):
            time.sleep(seconds)
            return seconds

    threaded = Threaded.remote()
    shoal.get(threaded.nap.remote(0))
    started = time.monotonic()
    assert shoal.get([threaded.nap.remote(1), threaded.nap.remote(1)]) == [1, 1]
    assert time.monotonic() - started < 1.8


def test_sync_actor_methods_do_not_overlap(cluster):
    @shoal.remote
    class Serial:
        def nap(self, seconds):
            time.sleep(seconds)
            return seconds

    serial = Serial.remote()
    shoal.get(serial.nap.remote(0))
    started = time.monotonic()
    shoal.get([serial.nap.remote(0.5), serial.nap.remote(0.5)])
    assert time.monotonic() - started >= 1.0


def test_concurrency_groups(cluster):
    @shoal.remote(concurrency_groups={"io": 2})
    class Grouped:
        @shoal.method(concurrency_group="io")
        async def wait_io(self):
            await asyncio.sleep(0.8)
            return "io"

        async def compute(self):
            return "compute"

    grouped = Grouped.remote()
    started = time.monotonic()
    assert shoal.get([grouped.wait_io.remote(), grouped.wait_io.remote(), grouped.compute.remote()]) == [
        "io",
        "io",
        "compute",
    ]
    assert time.monotonic() - started < 1.5


def test_handles_pass_to_tasks_and_actors(cluster):
    counter = Counter.remote()

    @shoal.remote
    def bump(handle, times):
        for _ in range(times):
            shoal.get(handle.increment.remote())
        return shoal.get(handle.get_count.remote())

    assert shoal.get(bump.remote(counter, 3)) == 3

    @shoal.remote
    class Holder:
        def __init__(self, handle):
            self.handle = handle

        def bump(self):
            return shoal.get(self.handle.increment.remote())

    holder = Holder.remote(counter)
    assert shoal.get(holder.bump.remote()) == 4
    stored = shoal.put([counter])
    assert shoal.get(shoal.get(stored)[0].get_count.remote()) == 4

    @shoal.remote
    def make():
        return Counter.remote(100)

    made = shoal.get(make.remote())
    assert shoal.get(made.increment.remote()) == 101


def test_named_actors(cluster):
    original = Counter.options(name="shared-counter").remote(7)  # keeps it alive, as in Ray
    found = shoal.get_actor("shared-counter")
    assert shoal.get(found.get_count.remote()) == 7
    with pytest.raises(ValueError):
        Counter.options(name="shared-counter").remote()
    with pytest.raises(exceptions.ActorAlreadyExistsError):
        Counter.options(name="shared-counter").remote()
    again = Counter.options(name="shared-counter", get_if_exists=True).remote()
    assert shoal.get(again.get_count.remote()) == 7
    with pytest.raises(ValueError, match="no-such-actor"):
        shoal.get_actor("no-such-actor")

    @shoal.remote
    def lookup():
        return shoal.get(shoal.get_actor("shared-counter").get_count.remote())

    assert shoal.get(lookup.remote()) == 7
    shoal.kill(found)
    del original


def test_named_actor_is_collected_with_its_last_handle(cluster):
    handle = Counter.options(name="short-lived").remote()
    assert shoal.get(shoal.get_actor("short-lived").get_count.remote()) == 0
    del handle
    wait_for(lambda: _lookup_fails("short-lived"), 15)


def _lookup_fails(name: str) -> bool:
    try:
        shoal.get_actor(name)
    except ValueError:
        return True
    return False


def test_named_actor_namespaces(cluster):
    team_a = Counter.options(name="ns-counter", namespace="team-a").remote(1)
    team_b = Counter.options(name="ns-counter", namespace="team-b").remote(2)
    assert shoal.get(shoal.get_actor("ns-counter", namespace="team-a").get_count.remote()) == 1
    assert shoal.get(shoal.get_actor("ns-counter", namespace="team-b").get_count.remote()) == 2
    with pytest.raises(ValueError):
        shoal.get_actor("ns-counter")
    del team_a, team_b


def test_kill_actor(cluster):
    counter = Counter.remote()
    assert shoal.get(counter.increment.remote()) == 1
    shoal.kill(counter)
    with pytest.raises(exceptions.RayActorError):
        shoal.get(counter.increment.remote(), timeout=30)


def test_restart_after_process_death(cluster):
    counter = Counter.options(max_restarts=1).remote()
    assert shoal.get(counter.increment.remote()) == 1
    first_pid = shoal.get(counter.pid.remote())
    with pytest.raises((exceptions.ActorUnavailableError, exceptions.RayActorError)):
        shoal.get(counter.die.remote(), timeout=30)
    # State is reset by the re-run constructor, and the process is new.
    assert shoal.get(counter.increment.remote(), timeout=30) == 1
    assert shoal.get(counter.pid.remote()) != first_pid
    with pytest.raises(exceptions.RayActorError):
        shoal.get(counter.die.remote(), timeout=30)
    with pytest.raises(exceptions.ActorDiedError):
        shoal.get(counter.increment.remote(), timeout=30)


def test_task_retries_replay_in_flight_call(cluster, tmp_path):
    marker = tmp_path / "died"

    @shoal.remote(max_restarts=1, max_task_retries=1)
    class Fragile:
        def work(self, path):
            if not os.path.exists(path):
                open(path, "w").close()
                os._exit(1)
            return "done"

    fragile = Fragile.remote()
    assert shoal.get(fragile.work.remote(str(marker)), timeout=30) == "done"


def test_restarted_actor_knows_it(cluster):
    @shoal.remote(max_restarts=1)
    class Knows:
        def restarted(self):
            return shoal.get_runtime_context().was_current_actor_reconstructed

        def die(self):
            os._exit(1)

    knows = Knows.remote()
    assert shoal.get(knows.restarted.remote()) is False
    knows.die.remote()
    wait_for(lambda: _safe_get(knows.restarted.remote()) is True, 30)


def _safe_get(ref):
    try:
        return shoal.get(ref, timeout=10)
    except exceptions.RayError:
        return None


def test_exit_actor(cluster):
    @shoal.remote
    class Quitter:
        def quit(self):
            shoal.actor.exit_actor()

        def ping(self):
            return "pong"

    quitter = Quitter.remote()
    assert shoal.get(quitter.ping.remote()) == "pong"
    with pytest.raises(exceptions.RayActorError):
        shoal.get(quitter.quit.remote(), timeout=30)
    with pytest.raises(exceptions.ActorDiedError):
        shoal.get(quitter.ping.remote(), timeout=30)


def test_actor_is_stopped_when_handles_are_gone(cluster):
    counter = Counter.remote()
    pid = shoal.get(counter.pid.remote())
    del counter
    import psutil

    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 15)


def test_actor_gpu_and_resources(cluster):
    @shoal.remote(num_gpus=1)
    class GpuActor:
        def ids(self):
            return shoal.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

    actor = GpuActor.remote()
    ids, visible = shoal.get(actor.ids.remote())
    assert len(ids) == 1 and visible == str(ids[0])
    shoal.kill(actor)


def test_default_actor_holds_no_cpu_while_running(cluster):
    actors = [Counter.remote() for _ in range(4)]  # more actors than CPUs
    assert shoal.get([a.increment.remote() for a in actors], timeout=30) == [1, 1, 1, 1]
    assert shoal.available_resources()["CPU"] == 2


def test_direct_instantiation_and_call_are_errors(cluster):
    with pytest.raises(TypeError, match=r"Counter\.remote\(\)"):
        Counter()
    counter = Counter.remote()
    with pytest.raises(TypeError, match="remote"):
        counter.increment()
    with pytest.raises(AttributeError, match="no_such_method"):
        counter.no_such_method.remote()
    with pytest.raises(ValueError, match="Invalid option"):
        Counter.options(bogus=1)


def test_detached_actor_outlives_its_driver(run_script, tmp_path):
    env = {"TMPDIR": str(tmp_path)}
    import subprocess
    import sys

    cli = [sys.executable, "-m", "shoal.cli"]
    subprocess.run(
        cli + ["start", "--num-cpus", "1"], check=True, capture_output=True, env={**os.environ, **env}, timeout=60
    )
    try:
        run_script(
            """
            import shoal
            shoal.init(address="auto", namespace="keep")

            @shoal.remote
            class Store:
                def __init__(self):
                    self.value = "kept"

                def read(self):
                    return self.value

            Store.options(name="store", lifetime="detached").remote()
            Store.options(name="temporary").remote()
            print(shoal.get(shoal.get_actor("store").read.remote()))
            """,
            env=env,
        )
        result = run_script(
            """
            import shoal
            shoal.init(address="auto", namespace="keep")
            print(shoal.get(shoal.get_actor("store").read.remote()))
            try:
                shoal.get_actor("temporary")
                print("temporary still alive")
            except ValueError:
                print("temporary gone")
            """,
            env=env,
        )
        assert result.stdout.split() == ["kept", "temporary", "gone"]
    finally:
        subprocess.run(cli + ["stop"], capture_output=True, env={**os.environ, **env}, timeout=60)
