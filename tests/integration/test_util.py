"""shoal.util: ActorPool and the distributed Queue."""

from __future__ import annotations

import time

import pytest
import shoal
from shoal.util import ActorPool
from shoal.util.queue import Empty, Full, Queue


@shoal.remote
class Doubler:
    def double(self, value):
        if value == "slow":
            time.sleep(0.5)
            return "slow"
        return 2 * value


def test_actor_pool_map_is_ordered(cluster):
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    assert list(pool.map(lambda actor, v: actor.double.remote(v), [1, 2, 3, 4])) == [2, 4, 6, 8]


def test_actor_pool_map_unordered(cluster):
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    results = list(pool.map_unordered(lambda actor, v: actor.double.remote(v), ["slow", 1, 2]))
    assert sorted(map(str, results)) == ["2", "4", "slow"]
    assert results[-1] == "slow"


def test_actor_pool_submit_and_get(cluster):
    pool = ActorPool([Doubler.remote()])
    pool.submit(lambda actor, v: actor.double.remote(v), 1)
    pool.submit(lambda actor, v: actor.double.remote(v), 2)  # waits for the only actor
    assert pool.has_next()
    assert pool.get_next() == 2
    assert pool.get_next() == 4
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()


def test_actor_pool_get_next_unordered_and_timeout(cluster):
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    pool.submit(lambda actor, v: actor.double.remote(v), "slow")
    pool.submit(lambda actor, v: actor.double.remote(v), 5)
    assert pool.get_next_unordered() == 10
    with pytest.raises(TimeoutError):
        pool.get_next_unordered(timeout=0.01)
    assert pool.get_next_unordered(timeout=5) == "slow"


def test_actor_pool_push_and_pop_idle(cluster):
    first = Doubler.remote()
    pool = ActorPool([first])
    assert pool.has_free()
    popped = pool.pop_idle()
    assert popped == first and not pool.has_free() and pool.pop_idle() is None
    pool.push(popped)
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(popped)
    assert list(pool.map(lambda actor, v: actor.double.remote(v), [7])) == [14]


def test_queue_put_get(cluster):
    queue = Queue()
    assert queue.empty() and len(queue) == 0
    queue.put(1)
    queue.put_nowait(2)
    queue.put_nowait_batch([3, 4])
    assert queue.qsize() == 4
    assert queue.get() == 1
    assert queue.get_nowait() == 2
    assert queue.get_nowait_batch(2) == [3, 4]
    with pytest.raises(Empty):
        queue.get_nowait()
    with pytest.raises(Empty):
        queue.get(timeout=0.1)
    queue.shutdown()


def test_queue_bounded(cluster):
    queue = Queue(maxsize=1)
    queue.put("a")
    assert queue.full()
    with pytest.raises(Full):
        queue.put("b", block=False)
    with pytest.raises(Full):
        queue.put("b", timeout=0.1)
    with pytest.raises(ValueError):
        queue.put("b", timeout=-1)
    queue.shutdown()


def test_queue_between_tasks_and_actors(cluster):
    queue = Queue()

    @shoal.remote
    def producer(q, count):
        for i in range(count):
            q.put(i)
        return "produced"

    @shoal.remote
    class Consumer:
        def __init__(self, q):
            self.q = q

        def take(self, count):
            return [self.q.get(timeout=10) for _ in range(count)]

    consumer = Consumer.remote(queue)
    taken = consumer.take.remote(5)
    assert shoal.get(producer.remote(queue, 5)) == "produced"
    assert shoal.get(taken, timeout=30) == [0, 1, 2, 3, 4]
    queue.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        queue.put(1)
