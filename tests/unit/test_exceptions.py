"""Unit tests for shoal.exceptions: names, hierarchy, task-error wrapping, messages, pickling."""

from __future__ import annotations

import os
import pickle
import signal
import traceback

import cloudpickle
import pytest
from shoal import exceptions
from shoal.exceptions import (
    ActorAlreadyExistsError,
    ActorDiedError,
    ActorUnavailableError,
    GetTimeoutError,
    ObjectLostError,
    OwnerDiedError,
    RayActorError,
    RayError,
    RayTaskError,
    TaskCancelledError,
    WorkerCrashedError,
    format_worker_death,
)

# Names Ray 2.x documents in ray.exceptions, plus shoal's extras asked for by its API.
RAY_NAMES = """
RayError RayTaskError RayActorError TaskCancelledError TaskUnschedulableError ActorDiedError
ActorUnschedulableError ActorUnavailableError AsyncioActorExit LocalRayletDiedError
WorkerCrashedError TaskPlacementGroupRemoved ActorPlacementGroupRemoved ObjectStoreFullError
OutOfDiskError OutOfMemoryError ObjectLostError ObjectFetchTimedOutError GetTimeoutError
OwnerDiedError PendingCallsLimitExceeded PlasmaObjectNotAvailable ObjectReconstructionFailedError
ObjectReconstructionFailedMaxAttemptsExceededError ObjectReconstructionFailedLineageEvictedError
RayChannelError RayChannelTimeoutError RayCgraphCapacityExceeded RuntimeEnvSetupError
CrossLanguageError RaySystemError NodeDiedError UnserializableException AuthenticationError
ReferenceCountingAssertionError ActorAlreadyExistsError PlacementGroupSchedulingError
ObjectRefStreamEndOfStreamError OufOfBandObjectRefSerializationException
""".split()


# Module-level classes so plain pickle can find them by reference.
class TwoArgError(Exception):
    init_calls = 0

    def __init__(self, a, b):
        type(self).init_calls += 1
        super().__init__(f"a={a} b={b}")
        self.a = a
        self.b = b


class _FinalMeta(type):
    def __new__(mcls, name, bases, namespace, **kwargs):
        if any(isinstance(base, _FinalMeta) for base in bases):
            raise TypeError(f"{bases[-1].__name__} cannot be subclassed")
        return super().__new__(mcls, name, bases, namespace, **kwargs)


class FinalError(Exception, metaclass=_FinalMeta):
    pass


class NoSubclassesError(Exception):
    def __init_subclass__(cls, **kwargs):
        raise TypeError("no subclasses")


def task_error(exc: BaseException, function_name: str = "f", **fields) -> RayTaskError:
    """A RayTaskError as a worker would build it: from a really raised exception."""
    try:
        raise exc
    except BaseException as raised:
        tb = "".join(traceback.format_exception(type(raised), raised, raised.__traceback__))
        return RayTaskError(function_name, tb, raised, **fields)


# --------------------------------------------------------------------------- names


def test_every_ray_name_is_exported():
    missing = [name for name in RAY_NAMES if name not in exceptions.__all__]
    assert missing == []
    for name in exceptions.__all__:
        assert hasattr(exceptions, name), name


def test_exception_types_list_covers_every_error_class():
    values = [getattr(exceptions, name) for name in exceptions.__all__]
    errors = {v for v in values if isinstance(v, type) and issubclass(v, BaseException)}
    assert errors == set(exceptions.RAY_EXCEPTION_TYPES)
    assert all(issubclass(c, RayError) for c in errors)


@pytest.mark.parametrize(
    "child, parent",
    [
        ("RayTaskError", "RayError"),
        ("ActorDiedError", "RayActorError"),
        ("ActorUnavailableError", "RayActorError"),
        ("RayActorError", "RayError"),
        ("GetTimeoutError", "RayError"),
        ("ObjectFetchTimedOutError", "ObjectLostError"),
        ("OwnerDiedError", "ObjectLostError"),
        ("ReferenceCountingAssertionError", "ObjectLostError"),
        ("ObjectReconstructionFailedError", "ObjectLostError"),
        ("ObjectReconstructionFailedMaxAttemptsExceededError", "ObjectLostError"),
        ("ObjectReconstructionFailedLineageEvictedError", "ObjectLostError"),
        ("RayChannelError", "RaySystemError"),
        ("RayChannelTimeoutError", "RayChannelError"),
        ("RayCgraphCapacityExceeded", "RaySystemError"),
    ],
)
def test_hierarchy(child, parent):
    assert issubclass(getattr(exceptions, child), getattr(exceptions, parent))


def test_builtin_bases():
    assert issubclass(ActorAlreadyExistsError, ValueError)
    assert issubclass(GetTimeoutError, TimeoutError)
    assert issubclass(exceptions.RayChannelTimeoutError, TimeoutError)
    assert issubclass(exceptions.ReferenceCountingAssertionError, AssertionError)
    assert issubclass(RayError, Exception)
    with pytest.raises(TimeoutError, match="timed out"):
        raise GetTimeoutError()
    with pytest.raises(ValueError, match="'counter'"):
        raise ActorAlreadyExistsError("counter", namespace="ns")


# --------------------------------------------------------------------------- RayTaskError


def test_message_shows_function_process_and_remote_traceback():
    error = task_error(ValueError("boom"), pid=4321, ip="10.0.0.7")
    text = str(error)
    first, *rest = text.splitlines()
    assert first == "shoal::f() (pid=4321, ip=10.0.0.7)"
    assert "Traceback (most recent call last)" not in text
    assert any(line.startswith("  File ") and "task_error" in line for line in rest)
    assert rest[-1] == "ValueError: boom"


def test_message_appends_cause_when_traceback_lacks_it():
    error = RayTaskError("g", "", KeyError("k"), proctitle="shoal::Counter.add()", actor_repr="Counter(3)")
    assert str(error) == "shoal::Counter.add() (repr=Counter(3))\nKeyError: 'k'"


def test_internal_frames_are_hidden_but_kept_raw():
    internal = os.path.join("site-packages", "shoal", "_core", "worker.py")
    tb = (
        "Traceback (most recent call last):\n"
        f'  File "{internal}", line 10, in run_task\n'
        "    result = function(*args)\n"
        '  File "user.py", line 3, in f\n'
        "    raise ValueError('x')\n"
        "ValueError: x\n"
    )
    error = RayTaskError("f", tb, ValueError("x"))
    assert "worker.py" not in str(error)
    assert "result = function" not in str(error)
    assert 'File "user.py"' in str(error)
    assert error.traceback_str == tb


def test_render_traceback_returns_remote_lines():
    error = task_error(ValueError("boom"), pid=1).as_instanceof_cause()
    lines = error._render_traceback_()
    assert isinstance(lines, list) and all(isinstance(line, str) for line in lines)
    assert lines[0] == "RayTaskError(ValueError): shoal::f() (pid=1)"
    assert lines[-1] == "ValueError: boom"
    assert any("raise exc" in line for line in lines)


def test_instanceof_cause_value_error():
    error = task_error(ValueError("boom")).as_instanceof_cause()
    assert isinstance(error, ValueError) and isinstance(error, RayTaskError)
    assert type(error).__name__ == "RayTaskError(ValueError)"
    assert type(error.cause) is ValueError
    assert str(error) == str(task_error(ValueError("boom")))
    with pytest.raises(ValueError):
        raise error


def test_instanceof_cause_key_error_keeps_args():
    error = task_error(KeyError("missing")).as_instanceof_cause()
    assert isinstance(error, KeyError)
    assert error.args == ("missing",)
    assert str(error).endswith("KeyError: 'missing'")


def test_instanceof_cause_custom_init_is_not_called():
    cause = TwoArgError(1, 2)
    calls = TwoArgError.init_calls
    error = task_error(cause).as_instanceof_cause()
    assert TwoArgError.init_calls == calls
    assert isinstance(error, TwoArgError)
    assert (error.a, error.b) == (1, 2)  # read through from the cause
    assert error.function_name == "f"
    assert "a=1 b=2" in str(error)


def test_instanceof_cause_copies_native_fields():
    error = task_error(FileNotFoundError(2, "No such file", "/nope")).as_instanceof_cause()
    assert isinstance(error, FileNotFoundError)
    assert (error.errno, error.strerror, error.filename) == (2, "No such file", "/nope")


def test_generated_classes_are_cached():
    first = task_error(ValueError("a")).as_instanceof_cause()
    second = task_error(ValueError("b")).as_instanceof_cause()
    assert type(first) is type(second)


@pytest.mark.parametrize("cause", [FinalError("no"), NoSubclassesError("no")])
def test_unsubclassable_cause_falls_back_to_plain_error(cause):
    error = task_error(cause)
    assert error.as_instanceof_cause() is error
    assert type(error) is RayTaskError
    assert error.cause is cause


@pytest.mark.parametrize("cause", [SystemExit(1), KeyboardInterrupt(), WorkerCrashedError("died"), None])
def test_causes_that_are_not_mixed_in(cause):
    error = RayTaskError("f", "", cause)
    assert error.as_instanceof_cause() is error


def test_nested_task_error_does_not_double_wrap():
    inner = task_error(ValueError("boom"), function_name="f", pid=1).as_instanceof_cause()

    def g():
        raise inner

    outer = task_error_from(g, "g", pid=2)
    assert type(outer.cause) is ValueError
    wrapped = outer.as_instanceof_cause()
    assert type(wrapped).__name__ == "RayTaskError(ValueError)"
    assert type(wrapped) is type(inner)
    text = str(wrapped)
    assert text.splitlines()[0] == "shoal::g() (pid=2)"
    assert "in g" in text and "shoal::f() (pid=1)" in text
    assert "failed because task 'f'" in text
    assert text.count("ValueError: boom") == 1
    assert text.endswith("ValueError: boom")


def test_failed_dependency_folds_into_the_dependent_task():
    inner = task_error(ValueError("boom"), function_name="f")
    outer = RayTaskError("g", "", inner)
    middle = RayTaskError("h", "", outer)
    assert type(middle.cause) is ValueError
    text = str(middle)
    assert text.index("task 'h'") < text.index("task 'g'") < text.index("shoal::f()")
    assert text.count("ValueError: boom") == 1


def task_error_from(function, function_name: str, **fields) -> RayTaskError:
    try:
        function()
    except Exception as raised:
        tb = "".join(traceback.format_exception(type(raised), raised, raised.__traceback__))
        return RayTaskError(function_name, tb, raised, **fields)
    raise AssertionError("function did not raise")


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_generated_class_survives_pickling(dumps):
    error = task_error(TwoArgError(1, 2), pid=7, ip="h", actor_id="ab").as_instanceof_cause()
    error.extra = "kept"
    copy = pickle.loads(dumps(error))
    assert type(copy) is type(error)
    assert isinstance(copy, TwoArgError) and isinstance(copy, RayTaskError)
    fields = (copy.a, copy.b, copy.pid, copy.ip, copy.actor_id, copy.extra)
    assert fields == (1, 2, 7, "h", "ab", "kept")
    assert str(copy) == str(error)


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_custom_init_cause_survives_pickling_inside_plain_errors(dumps):
    # BaseException's own pickling would call TwoArgError("a=1 b=2") and fail on load.
    error = task_error(FinalError("x"))  # stays a plain RayTaskError
    error.cause = TwoArgError(1, 2)
    died = ActorDiedError(error, class_name="A")
    copy = pickle.loads(dumps(died))
    assert type(copy.cause) is RayTaskError
    assert (copy.cause.cause.a, copy.cause.cause.b) == (1, 2)
    assert copy.cause.cause.args == ("a=1 b=2",)
    assert str(copy) == str(died)


def test_locally_defined_cause_survives_cloudpickle():
    class LocalError(Exception):
        pass

    error = task_error(LocalError("here")).as_instanceof_cause()
    copy = cloudpickle.loads(cloudpickle.dumps(error))
    assert isinstance(copy, RayTaskError)
    assert type(copy).__name__ == "RayTaskError(LocalError)"
    assert str(copy) == str(error)


# --------------------------------------------------------------------------- other errors


def test_actor_died_error_carries_constructor_failure():
    init_error = task_error(ValueError("bad config"), function_name="Counter.__init__")
    error = ActorDiedError(init_error, class_name="Counter", actor_id="a1")
    assert isinstance(error, RayActorError)
    assert error.actor_init_failed and error.cause is init_error
    assert "constructor raised" in str(error)
    assert "raise exc" in str(error) and "ValueError: bad config" in str(error)


def test_actor_died_error_with_message_and_details():
    death = format_worker_death(99, signal_number=9)
    error = ActorDiedError(death, actor_id="a1", class_name="Counter", pid=99, name="c")
    text = str(error)
    assert "class_name: Counter" in text and "pid: 99" in text and "name: c" in text
    assert "SIGKILL" in text and not error.actor_init_failed
    assert "died unexpectedly" in str(ActorDiedError())


def test_simple_messages():
    assert "abc" in str(TaskCancelledError("abc"))
    assert "cancelled" in str(TaskCancelledError())
    assert "unavailable: restarting" in str(ActorUnavailableError("restarting", "a1"))
    assert "died unexpectedly" in str(WorkerCrashedError())
    assert str(WorkerCrashedError("custom")) == "custom"
    assert "disk" in str(exceptions.OutOfDiskError())
    assert str(exceptions.ObjectStoreFullError("put of 3 GiB failed")).startswith("put of 3 GiB")
    assert "System error: gone" in str(exceptions.RaySystemError("gone"))


def test_object_lost_messages_explain_why():
    lost = ObjectLostError("00ff", call_site="script.py:3")
    assert "00ff" in str(lost) and "script.py:3" in str(lost) and "lost" in str(lost)
    owner = OwnerDiedError("00ff", owner_address="10.0.0.2:5000")
    assert "owner at 10.0.0.2:5000 has died" in str(owner)
    evicted = exceptions.ObjectReconstructionFailedLineageEvictedError("00ff")
    assert "lineage" in str(evicted)
    assert "max_retries" in str(exceptions.ObjectReconstructionFailedMaxAttemptsExceededError("1"))


SAMPLES = [
    RayError("plain"),
    TaskCancelledError("t1"),
    WorkerCrashedError(format_worker_death(5, exitcode=-9, last_task="f")),
    RayActorError("a1", "oops", True, True),
    ActorDiedError(task_error(ValueError("init")), class_name="A", actor_id="a1"),
    ActorDiedError("killed", actor_id="a2", pid=3),
    ActorUnavailableError("restarting", "a3"),
    ActorAlreadyExistsError("name", "ns"),
    GetTimeoutError(),
    ObjectLostError("ff", "owner:1", "here"),
    OwnerDiedError("ff", "owner:1"),
    exceptions.ReferenceCountingAssertionError("ff"),
    exceptions.ObjectReconstructionFailedLineageEvictedError("ff"),
    exceptions.RaySystemError(RuntimeError("x"), "tb"),
    exceptions.RayChannelTimeoutError("slow"),
    exceptions.RuntimeEnvSetupError("pip failed"),
    exceptions.TaskUnschedulableError("no node"),
    exceptions.ActorUnschedulableError("no node"),
    exceptions.UnserializableException("Traceback ..."),
    exceptions.OutOfMemoryError("used 9 GiB"),
    exceptions.NodeDiedError("node n1"),
    exceptions.PendingCallsLimitExceeded(),
    exceptions.CrossLanguageError("from Java"),
    task_error(ValueError("v"), pid=1),
]


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_every_error_pickles_with_its_fields(error, dumps):
    copy = pickle.loads(dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert repr(copy.args) == repr(error.args)  # exceptions inside compare by identity
    assert sorted(vars(copy)) == sorted(vars(error))
    for name, value in vars(error).items():
        if not isinstance(value, BaseException):
            assert getattr(copy, name) == value, name


# --------------------------------------------------------------------------- worker deaths


def test_worker_death_by_signal():
    text = format_worker_death(1234, signal_number=signal.SIGKILL, last_task="f")
    assert text.startswith(
        "The worker process (pid 1234) died unexpectedly: killed by signal 9 (SIGKILL) "
        "while running task 'f'. Likely causes: "
    )
    assert "out of memory" in text


def test_worker_death_negative_exitcode_means_signal():
    text = format_worker_death(7, exitcode=-11)
    assert "signal 11 (SIGSEGV)" in text and "native code" in text
    assert "while running" not in text


def test_worker_death_by_exit_code():
    assert "exited with code 3" in format_worker_death(7, exitcode=3)
    assert "sys.exit" in format_worker_death(7, exitcode=0)
    assert "signal 9 (SIGKILL)" in format_worker_death(7, exitcode=137)


def test_worker_death_unknown_reason():
    text = format_worker_death(7, last_task="Counter.add")
    assert text == (
        "The worker process (pid 7) died unexpectedly while running task 'Counter.add'. "
        "Likely causes: an out-of-memory kill, os._exit() or a crash in native code."
    )
    assert "signal 200" in format_worker_death(7, signal_number=200)
    assert format_worker_death(None, exitcode=1).startswith("The worker process died")
