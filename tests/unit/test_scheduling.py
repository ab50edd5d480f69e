"""Unit tests for the local scheduler: events in (method calls), actions out (`schedule(now)`)."""

from __future__ import annotations

import pytest
from shoal._core.scheduling import UNIT, SchedulerState, fits, shape_to_dict, to_shape

FAST = b"fast-fn"
SLOW = b"slow-fn"
CPU1 = {"CPU": 1}


def make(total=None, *, max_workers=8, pipeline_depth=4, fast_task_threshold_s=0.01) -> SchedulerState:
    return SchedulerState(
        total or {"CPU": 4},
        max_workers=max_workers,
        pipeline_depth=pipeline_depth,
        fast_task_threshold_s=fast_task_threshold_s,
    )


def with_workers(state: SchedulerState, count: int, now: float = 0.0) -> list[bytes]:
    ids = [b"w%d" % i for i in range(count)]
    for worker_id in ids:
        state.add_worker(worker_id, now)
    return ids


def enqueue(state: SchedulerState, count: int, resources=CPU1, function_id=SLOW, prefix=b"t") -> list[bytes]:
    ids = [prefix + b"%d" % i for i in range(count)]
    for task_id in ids:
        state.enqueue(task_id, resources, function_id)
    return ids


def dispatched(dispatches) -> list[bytes]:
    return [task_id for _, task_ids in dispatches for task_id in task_ids]


def learn_mean(state: SchedulerState, function_id: bytes, duration_s: float) -> None:
    """Run one task of `function_id` so the scheduler learns its duration."""
    state.add_worker(b"learner", 0.0)
    state.enqueue(b"learn", CPU1, function_id)
    dispatches, _ = state.schedule(0.0)
    assert dispatches == [(b"learner", [b"learn"])]
    state.task_finished(b"learner", b"learn", duration_s, 0.0)
    state.remove_worker(b"learner")


# -- shapes ---------------------------------------------------------------------------------


def test_to_shape_is_sorted_integer_milli_units_without_zeros():
    assert to_shape({"GPU": 0.5, "CPU": 1, "custom": 0}) == (("CPU", UNIT), ("GPU", UNIT // 2))
    assert to_shape({"CPU": 0.1}) == to_shape({"CPU": 0.1 + 1e-12})
    assert shape_to_dict(to_shape({"CPU": 0.25, "x": 2})) == {"CPU": 0.25, "x": 2.0}
    assert to_shape({}) == ()
    assert fits({}, ())
    state = make({"CPU": 2.5, "GPU": 1})
    assert state.total_dict() == state.available_dict() == {"CPU": 2.5, "GPU": 1.0}


# -- dispatch -------------------------------------------------------------------------------


def test_dispatches_to_idle_workers_while_resources_fit():
    state = make({"CPU": 2})
    enqueue(state, 1, prefix=b"first")
    assert state.schedule(0.0) == ([], 1)  # no worker yet: ask for one
    state.cancel_queued(b"first0")
    with_workers(state, 3)
    tasks = enqueue(state, 3)
    dispatches, to_start = state.schedule(0.0)
    assert sorted(dispatched(dispatches)) == tasks[:2]
    assert all(len(task_ids) == 1 for _, task_ids in dispatches)
    assert len({worker_id for worker_id, _ in dispatches}) == 2
    assert to_start == 0
    assert state.available_dict() == {"CPU": 0.0}
    assert state.queued_count() == 1
    # Nothing changes until a task finishes; then the third task takes its place.
    assert state.schedule(1.0) == ([], 0)
    worker_id = state.worker_of(tasks[0])
    state.task_finished(worker_id, tasks[0], 0.5, 1.0)
    assert state.worker_of(tasks[0]) is None
    assert state.available_dict() == {"CPU": 1.0}
    assert dispatched(state.schedule(1.0)[0]) == [tasks[2]]


def test_fractional_cpus_pack_exactly_two_per_cpu():
    state = make({"CPU": 1})
    with_workers(state, 3)
    tasks = enqueue(state, 3, {"CPU": 0.5})
    dispatches, _ = state.schedule(0.0)
    assert sorted(dispatched(dispatches)) == tasks[:2]
    assert state.available == {"CPU": 0}
    for worker_id, task_ids in dispatches:
        state.task_finished(worker_id, task_ids[0], 1.0, 1.0)
    assert state.available == {"CPU": UNIT}
    # Tenths add up exactly too: ten fit in one CPU, the eleventh waits.
    state = make({"CPU": 1}, max_workers=20)
    with_workers(state, 11)
    enqueue(state, 11, {"CPU": 0.1})
    assert len(dispatched(state.schedule(0.0)[0])) == 10
    assert state.available == {"CPU": 0}


def test_gpu_task_waits_without_blocking_cpu_shape():
    state = make({"CPU": 4, "GPU": 1})
    with_workers(state, 3)
    gpu_tasks = enqueue(state, 2, {"CPU": 1, "GPU": 1}, prefix=b"g")
    cpu_tasks = enqueue(state, 1, CPU1, prefix=b"c")
    started = dispatched(state.schedule(0.0)[0])
    assert gpu_tasks[0] in started and cpu_tasks[0] in started
    assert gpu_tasks[1] not in started
    assert state.queued_count() == 1


def test_infeasible_shape_stays_queued_and_does_not_block_others():
    state = make({"CPU": 2})
    with_workers(state, 2)
    assert not state.is_feasible(to_shape({"GPU": 1}))
    enqueue(state, 1, {"GPU": 1}, prefix=b"g")
    cpu_tasks = enqueue(state, 1)
    dispatches, to_start = state.schedule(0.0)
    assert dispatched(dispatches) == cpu_tasks
    assert to_start == 0
    assert state.queued_count() == 1


def test_dedicated_worker_gets_no_pool_tasks():
    state = make()
    [worker_id] = with_workers(state, 1)
    state.workers[worker_id].dedicated = True
    enqueue(state, 1)
    assert state.schedule(0.0)[0] == []


# -- pipelining -----------------------------------------------------------------------------


@pytest.mark.parametrize("mean_s", [None, 0.5], ids=["unknown", "slow"])
def test_unknown_or_slow_functions_are_not_pipelined(mean_s):
    state = make({"CPU": 1}, pipeline_depth=4, fast_task_threshold_s=0.01)
    if mean_s is not None:
        learn_mean(state, FAST, mean_s)
    with_workers(state, 1)
    enqueue(state, 5, function_id=FAST)
    assert state.schedule(0.0)[0] == [(b"w0", [b"t0"])]
    assert state.schedule(0.0)[0] == []


def test_fast_function_is_pipelined_up_to_depth():
    state = make({"CPU": 1}, pipeline_depth=3, fast_task_threshold_s=0.01)
    learn_mean(state, FAST, 0.001)
    assert state.mean_duration_s[FAST] == 0.001
    learn_mean(state, FAST, 0.006)
    assert state.mean_duration_s[FAST] == pytest.approx(0.002)  # moving average 0.8 / 0.2
    [worker_id] = with_workers(state, 1)
    tasks = enqueue(state, 10, function_id=FAST)
    dispatches, _ = state.schedule(0.0)
    assert dispatches == [(worker_id, tasks[:3])]
    assert len(state.workers[worker_id].assigned) == 3
    # Full: nothing more until one finishes; then exactly one more fills the pipe again.
    assert state.schedule(0.0)[0] == []
    state.task_finished(worker_id, tasks[0], 0.001, 0.1)
    assert state.schedule(0.1)[0] == [(worker_id, [tasks[3]])]
    assert len(state.workers[worker_id].assigned) == 3


def test_pipelining_spreads_across_workers_and_respects_depth():
    state = make({"CPU": 2}, pipeline_depth=4)
    learn_mean(state, FAST, 0.001)
    with_workers(state, 2)
    tasks = enqueue(state, 20, function_id=FAST)
    assert sorted(dispatched(state.schedule(0.0)[0])) == sorted(tasks[:8])
    assert [len(slot.assigned) for slot in state.workers.values()] == [4, 4]
    assert state.queued_count() == 12


def test_pipelining_batches_are_split_fairly_when_few_tasks():
    state = make({"CPU": 2}, pipeline_depth=8)
    learn_mean(state, FAST, 0.001)
    with_workers(state, 2)
    enqueue(state, 4, function_id=FAST)
    dispatches, _ = state.schedule(0.0)
    # No worker hoards the queue: at most ceil(queued / workers) each, and both get work.
    assert len(dispatches) == 2
    assert all(1 <= len(task_ids) <= 2 for _, task_ids in dispatches)


def test_blocked_worker_is_not_fed_pipelined_tasks():
    state = make({"CPU": 2}, pipeline_depth=4)
    learn_mean(state, FAST, 0.001)
    [worker_id] = with_workers(state, 1)
    tasks = enqueue(state, 2, function_id=FAST)
    assert state.schedule(0.0)[0] == [(worker_id, tasks)]
    state.worker_blocked(worker_id, True)
    enqueue(state, 3, function_id=FAST, prefix=b"m")
    assert state.schedule(0.0) == ([], 1)  # the lent CPUs need a new worker instead


# -- blocking -------------------------------------------------------------------------------


def test_worker_blocked_lends_its_grant_and_unblock_takes_it_back():
    state = make({"CPU": 1})
    w0, w1 = with_workers(state, 2)
    outer, inner = enqueue(state, 2)
    assert dispatched(state.schedule(0.0)[0]) == [outer]
    holder = state.worker_of(outer)
    state.worker_blocked(holder, True)
    assert state.available == {"CPU": UNIT}
    state.worker_blocked(holder, True)  # idempotent
    assert state.available == {"CPU": UNIT}
    nested_dispatch = state.schedule(0.0)[0]
    assert dispatched(nested_dispatch) == [inner]
    assert state.available == {"CPU": 0}
    state.worker_blocked(holder, False)
    assert state.available == {"CPU": -UNIT}  # oversubscribed briefly, as in Ray
    state.worker_blocked(holder, False)  # idempotent
    assert state.available == {"CPU": -UNIT}
    state.task_finished(state.worker_of(inner), inner, 0.1, 1.0)
    state.task_finished(holder, outer, 0.1, 1.0)
    assert state.available == {"CPU": UNIT}
    # Blocking an idle or unknown worker is ignored.
    state.worker_blocked(holder, True)
    state.worker_blocked(b"unknown", True)
    assert state.available == {"CPU": UNIT} and state.workers[holder].blocked is False


def test_blocked_worker_finishing_does_not_release_twice():
    state = make({"CPU": 1})
    [worker_id] = with_workers(state, 1)
    [task_id] = enqueue(state, 1)
    state.schedule(0.0)
    state.worker_blocked(worker_id, True)
    state.task_finished(worker_id, task_id, 0.1, 1.0)
    assert state.available == {"CPU": UNIT}
    assert state.workers[worker_id].blocked is False
    # Nor does losing a blocked worker.
    enqueue(state, 1, prefix=b"again")
    state.schedule(1.0)
    state.worker_blocked(worker_id, True)
    state.remove_worker(worker_id)
    assert state.available == {"CPU": UNIT}


def test_requeue_front_puts_handed_back_tasks_at_the_head_in_order():
    state = make({"CPU": 1}, pipeline_depth=4)
    learn_mean(state, FAST, 0.001)
    [worker_id] = with_workers(state, 1)
    tasks = enqueue(state, 6, function_id=FAST)
    assert dispatched(state.schedule(0.0)[0]) == tasks[:4]
    state.worker_blocked(worker_id, True)
    state.requeue_front(worker_id, tasks[1:4])
    assert list(state.workers[worker_id].assigned) == tasks[:1]
    assert all(state.worker_of(task_id) is None for task_id in tasks[1:4])
    assert list(state.queues[to_shape(CPU1)]) == tasks[1:]
    assert state.queued_count() == 5
    state.enqueue(b"urgent", CPU1, SLOW, front=True)
    assert list(state.queues[to_shape(CPU1)])[0] == b"urgent"


# -- worker loss and cancellation -----------------------------------------------------------


def test_remove_worker_returns_lost_tasks_and_frees_resources():
    state = make({"CPU": 2, "GPU": 1}, pipeline_depth=3)
    learn_mean(state, FAST, 0.001)
    [worker_id] = with_workers(state, 1)
    tasks = enqueue(state, 3, {"CPU": 1, "GPU": 1}, function_id=FAST)
    state.schedule(0.0)
    assert state.gpu_free == {0: 0}
    lost = state.remove_worker(worker_id)
    assert lost == tasks
    assert state.available == {"CPU": 2 * UNIT, "GPU": UNIT}
    assert state.gpu_free == {0: UNIT}
    assert all(state.worker_of(task_id) is None for task_id in tasks)
    assert state.tasks == {}
    assert state.remove_worker(worker_id) == []


def test_worker_died_charges_only_its_first_task_and_requeues_the_rest_at_the_front():
    state = make({"CPU": 2, "GPU": 1}, pipeline_depth=4)
    learn_mean(state, FAST, 0.001)
    [worker_id] = with_workers(state, 1)
    shape = {"CPU": 1, "GPU": 1}
    tasks = enqueue(state, 6, shape, function_id=FAST)
    assert dispatched(state.schedule(0.0)[0]) == tasks[:4]
    state.task_finished(worker_id, tasks[0], 0.001, 0.0)  # results come back in order
    lost, never_started = state.worker_died(worker_id)
    # Only the first unfinished task can have begun: a pool worker runs them one at a time.
    assert lost == [tasks[1]]
    assert never_started == tasks[2:4]
    assert list(state.queues[to_shape(shape)]) == tasks[2:]  # ahead of those never sent, in order
    assert all(state.worker_of(task_id) is None for task_id in tasks)
    assert tasks[1] not in state.tasks and all(task_id in state.tasks for task_id in tasks[2:])
    assert state.available == {"CPU": 2 * UNIT, "GPU": UNIT} and state.gpu_free == {0: UNIT}
    assert worker_id not in state.workers
    # A new worker picks them up where the dead one stopped.
    [new_worker] = with_workers(state, 1)
    assert state.schedule(1.0)[0] == [(new_worker, tasks[2:])]
    assert state.worker_died(b"unknown") == ([], [])


def test_worker_died_requeued_tasks_can_be_cancelled():
    state = make({"CPU": 1}, pipeline_depth=3)
    learn_mean(state, FAST, 0.001)
    [worker_id] = with_workers(state, 1)
    running, waiting, last = enqueue(state, 3, function_id=FAST)
    state.schedule(0.0)
    assert state.cancel_queued(waiting) is False  # sent to the worker: not cancellable here
    assert state.worker_died(worker_id) == ([running], [waiting, last])
    assert state.cancel_queued(waiting) is True
    assert list(state.queues[to_shape(CPU1)]) == [last]


def test_worker_died_blocked_worker_does_not_release_twice():
    state = make({"CPU": 1}, pipeline_depth=2)
    learn_mean(state, FAST, 0.001)
    [worker_id] = with_workers(state, 1)
    tasks = enqueue(state, 2, function_id=FAST)
    state.schedule(0.0)
    state.worker_blocked(worker_id, True)  # its CPU is lent out already
    assert state.worker_died(worker_id) == (tasks[:1], tasks[1:])
    assert state.available == {"CPU": UNIT}


def test_worker_died_dedicated_worker_loses_everything_and_requeues_nothing():
    state = make({"CPU": 2})
    reservation = state.reserve({"CPU": 1})
    state.add_dedicated_worker(b"actor", reservation, 0.0)
    state.workers[b"actor"].assigned.extend([b"call0", b"call1"])  # calls are the actor's to order
    assert state.worker_died(b"actor") == ([b"call0", b"call1"], [])
    assert state.available == {"CPU": 2 * UNIT}
    assert state.queues == {}


def test_only_the_first_unreported_task_of_a_pool_worker_may_have_started():
    state = make({"CPU": 2}, pipeline_depth=3)
    learn_mean(state, FAST, 0.001)
    [worker_id] = with_workers(state, 1)
    first, second, third, queued = enqueue(state, 4, resources={"CPU": 2}, function_id=FAST)
    state.schedule(0.0)
    assert [state.may_have_started(task_id) for task_id in (first, second, third)] == [True, False, False]
    state.task_finished(worker_id, first, 0.001, 0.0)
    assert state.may_have_started(second) and not state.may_have_started(third)
    # Not sent to a worker (still queued, or unknown): the caller cannot rule out that it runs.
    assert state.may_have_started(queued) and state.may_have_started(b"unknown")
    reservation = state.reserve({"CPU": 0})
    state.add_dedicated_worker(b"actor", reservation, 0.0)
    state.workers[b"actor"].assigned.extend([b"call0", b"call1"])
    state.task_worker.update({b"call0": b"actor", b"call1": b"actor"})
    assert state.may_have_started(b"call1")  # an actor's calls may run concurrently


def test_cancel_queued():
    state = make({"CPU": 1})
    with_workers(state, 1)
    running, queued = enqueue(state, 2)
    state.schedule(0.0)
    assert state.cancel_queued(running) is False
    assert state.cancel_queued(queued) is True
    assert state.cancel_queued(queued) is False
    assert state.cancel_queued(b"never") is False
    assert state.queued_count() == 0
    assert queued not in state.tasks


# -- worker pool ----------------------------------------------------------------------------


def test_start_requests_count_workers_already_starting():
    state = make({"CPU": 4}, max_workers=8)
    enqueue(state, 4)
    assert state.schedule(0.0)[1] == 1
    state.worker_starting(1)
    assert state.schedule(0.0)[1] == 0
    state.worker_start_failed(1)
    assert state.schedule(0.0)[1] == 1
    state.worker_start_failed(5)
    assert state.starting == 0
    # No start while the queued shape cannot fit anyway.
    state = make({"CPU": 1})
    with_workers(state, 1)
    enqueue(state, 3)
    assert state.schedule(0.0)[1] == 0


def test_start_requests_bounded_by_max_workers():
    state = make({"CPU": 4, "a": 1, "b": 1}, max_workers=2)
    for resources, prefix in ((CPU1, b"c"), ({"a": 1}, b"a"), ({"b": 1}, b"b")):
        enqueue(state, 2, resources, prefix=prefix)
    assert state.schedule(0.0)[1] == 2  # three shapes want a worker each
    state.worker_starting(2)
    assert state.schedule(0.0)[1] == 0
    state.add_worker(b"w0", 0.0)
    assert state.starting == 1
    state.schedule(0.0)
    assert state.schedule(0.0)[1] == 0  # one running + one starting = max_workers


def test_idle_workers_to_stop_honours_timeout_and_keep():
    state = make({"CPU": 8})
    state.add_worker(b"old", 0.0)
    state.add_worker(b"mid", 5.0)
    state.add_worker(b"new", 9.0)
    state.add_worker(b"busy", 0.0)
    enqueue(state, 1)
    assert state.schedule(0.0)[0] == [(b"busy", [b"t0"])]
    assert state.idle_workers_to_stop(10.0, timeout_s=100.0, keep=0) == []
    assert state.idle_workers_to_stop(10.0, timeout_s=4.0, keep=0) == [b"old", b"mid"]
    assert state.idle_workers_to_stop(1000.0, timeout_s=0.0, keep=0) == [b"old", b"mid", b"new"]
    # keep counts every pool worker, the busy one included.
    assert state.idle_workers_to_stop(1000.0, timeout_s=0.0, keep=2) == [b"old", b"mid"]
    assert state.idle_workers_to_stop(1000.0, timeout_s=0.0, keep=4) == []
    # Finishing its last task restarts a worker's idle clock.
    state.task_finished(b"busy", b"t0", 1.0, 50.0)
    assert b"busy" not in state.idle_workers_to_stop(55.0, timeout_s=10.0, keep=0)
    assert b"busy" in state.idle_workers_to_stop(60.0, timeout_s=10.0, keep=0)


# -- GPU ids --------------------------------------------------------------------------------


def test_whole_gpus_are_exclusive_and_released_on_finish():
    state = make({"CPU": 8, "GPU": 3})
    with_workers(state, 3)
    two, one, blocked = enqueue(state, 1, {"GPU": 2}, prefix=b"a") + enqueue(state, 2, {"GPU": 1}, prefix=b"b")
    assert set(dispatched(state.schedule(0.0)[0])) == {two, one}
    slots = [state.workers[state.worker_of(task_id)] for task_id in (two, one)]
    assert sorted(i for slot in slots for i in slot.gpu_ids) == [0, 1, 2]  # disjoint
    assert [len(slot.gpu_ids) for slot in slots] == [2, 1]
    assert all(slot.gpu_share == UNIT for slot in slots)
    worker_two = state.worker_of(two)
    state.task_finished(worker_two, two, 1.0, 1.0)
    assert state.workers[worker_two].gpu_ids == []
    assert sum(1 for free in state.gpu_free.values() if free == UNIT) == 2
    [(_, [task_id])] = state.schedule(1.0)[0]
    assert task_id == blocked


def test_fractional_gpus_share_one_device():
    state = make({"CPU": 8, "GPU": 2})
    with_workers(state, 3)
    tasks = enqueue(state, 3, {"GPU": 0.5})
    state.schedule(0.0)
    slots = [state.workers[state.worker_of(t)] for t in tasks]
    assert [slot.gpu_ids for slot in slots[:2]] == [[0], [0]]
    assert slots[2].gpu_ids == [1]
    assert all(slot.gpu_share == UNIT // 2 for slot in slots)
    assert state.gpu_free == {0: 0, 1: UNIT // 2}
    for task_id, slot in zip(tasks, slots):
        state.task_finished(slot.worker_id, task_id, 1.0, 1.0)
    assert state.gpu_free == {0: UNIT, 1: UNIT}
    assert state.available_dict()["GPU"] == 2.0


def test_fractional_gpu_request_waits_when_no_single_device_has_room():
    # 0.6 + 0.6 land on different devices (0.4 left on each): 0.8 GPU is free in total but no
    # one device can hold a 0.8 share, so the task must wait rather than run with no GPU id.
    state = make({"CPU": 8, "GPU": 2})
    with_workers(state, 3)
    first, second = enqueue(state, 2, {"GPU": 0.6}, prefix=b"a")
    state.schedule(0.0)
    assert state.gpu_free == {0: 400, 1: 400}
    [late] = enqueue(state, 1, {"GPU": 0.8}, prefix=b"b")
    assert state.schedule(0.0)[0] == []
    state.task_finished(state.worker_of(first), first, 1.0, 1.0)
    [(worker_id, [task_id])] = state.schedule(1.0)[0]
    assert task_id == late and state.workers[worker_id].gpu_ids == [0]
