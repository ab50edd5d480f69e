"""Ray-compatible exception types and the wording of the failures they report.

Owns the public error names (``shoal.exceptions`` answers to ``ray.exceptions``), the task
error that is also an instance of the user's own exception class, and the message that explains
a worker's death. A leaf module: it imports nothing from shoal but the leaf `_core.frame_names`,
and does no I/O.

Every error pickles without calling its ``__init__`` again: the message lives in ``args`` and the
structured fields in ``__dict__``, so constructors are free to take whatever arguments read best.
"""

from __future__ import annotations

import copyreg
import linecache
import os
import signal
import sys
import threading
import traceback
import types
from typing import Any, cast

from ._core.frame_names import name_cell_frames

__all__ = [
    "RAY_EXCEPTION_TYPES",
    "ActorAlreadyExistsError",
    "ActorDiedError",
    "ActorPlacementGroupRemoved",
    "ActorUnavailableError",
    "ActorUnschedulableError",
    "AsyncioActorExit",
    "AuthenticationError",
    "CrossLanguageError",
    "GetTimeoutError",
    "LocalRayletDiedError",
    "NodeDiedError",
    "ObjectFetchTimedOutError",
    "ObjectLostError",
    "ObjectReconstructionFailedError",
    "ObjectReconstructionFailedLineageEvictedError",
    "ObjectReconstructionFailedMaxAttemptsExceededError",
    "ObjectRefStreamEndOfStreamError",
    "ObjectStoreFullError",
    "OufOfBandObjectRefSerializationException",
    "OutOfDiskError",
    "OutOfMemoryError",
    "OwnerDiedError",
    "PendingCallsLimitExceeded",
    "PlacementGroupSchedulingError",
    "PlasmaObjectNotAvailable",
    "RayActorError",
    "RayCgraphCapacityExceeded",
    "RayChannelError",
    "RayChannelTimeoutError",
    "RayError",
    "RaySystemError",
    "RayTaskError",
    "ReferenceCountingAssertionError",
    "RuntimeEnvSetupError",
    "TaskCancelledError",
    "TaskPlacementGroupRemoved",
    "TaskUnschedulableError",
    "UnserializableException",
    "WorkerCrashedError",
    "format_worker_death",
]


class RayError(Exception):
    """Base class of every error the runtime raises on its own behalf.

    Catch it to handle any shoal failure at once. Subclasses that take no arguments fall back
    to a class-specific default message.
    """

    _default_message = ""

    def __init__(self, *args: Any) -> None:
        if not args and self._default_message:
            args = (self._default_message,)
        super().__init__(*args)

    def __reduce__(self):
        # Rebuild with __new__ only: subclass constructors take structured arguments, while the
        # finished message is in `args` and every other field is in `__dict__`.
        # `args` rides in the state too: OSError-based errors ignore arguments given to __new__.
        # copyreg.__newobj__ exists (pickle emits NEWOBJ for it) but typeshed does not declare it.
        newobj = copyreg.__newobj__  # pyright: ignore[reportAttributeAccessIssue]
        return (newobj, (type(self), *self.args), {**self.__dict__, "args": self.args})


def _with_hint(message: str | None, hint: str) -> str:
    return f"{message}\n{hint}" if message else hint


# --------------------------------------------------------------------------- task errors

# Frames from these folders are the runtime's own plumbing; they are hidden from messages
# (the raw text stays in `traceback_str`).
_HERE = os.path.dirname(os.path.abspath(__file__))
_INTERNAL_FRAME_MARKERS = tuple(
    {os.path.join(root, "_core") + os.sep for root in (os.sep + "shoal", _HERE, os.path.realpath(_HERE))}
)


def _drop_internal_frames(lines: list[str]) -> list[str]:
    kept: list[str] = []
    skipping = False
    for line in lines:
        if line.startswith("  File "):
            skipping = any(marker in line for marker in _INTERNAL_FRAME_MARKERS)
        elif not (skipping and line.startswith("    ")):
            skipping = False
        if not skipping:
            kept.append(line)
    return kept


def _exception_only(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception_only(type(exc), exc)).rstrip("\n")
    except Exception:  # a user __str__ that raises must not hide the task's failure
        return type(exc).__name__


class RayTaskError(RayError):
    """A task or actor method raised an exception; ``get()`` on its result raises this.

    ``get()`` raises ``as_instanceof_cause()`` of this error, so ``except ValueError`` catches a
    ValueError raised remotely and ``except RayTaskError`` catches every application failure.

    Args:
        function_name: Name of the task's function or ``Class.method``.
        traceback_str: The traceback formatted in the worker that ran the task.
        cause: The exception the task raised. When it is itself a RayTaskError (the task failed
            because a task it depended on failed), the inner error's text is folded into this
            one's traceback and its cause is kept, so errors never wrap errors.
        proctitle: Title of the process that ran the task; defaults to ``shoal::<function>()``.
        pid: Process id of that worker, if known.
        ip: Address of that worker's node, if known.
        actor_repr: ``repr()`` of the actor, for actor methods.
        actor_id: Hex id of the actor, for actor methods.

    Attributes:
        cause: The innermost exception raised by user code.
        traceback_str: Remote traceback text, including the folded-in tracebacks of failed
            dependencies.
    """

    def __init__(
        self,
        function_name: str,
        traceback_str: str | None,
        cause: BaseException | None,
        proctitle: str | None = None,
        pid: int | None = None,
        ip: str | None = None,
        actor_repr: str | None = None,
        actor_id: str | None = None,
    ) -> None:
        traceback_str = traceback_str or ""
        if isinstance(cause, RayTaskError):
            traceback_str = _fold_inner_failure(function_name, traceback_str, cause)
            cause = cause.cause
        super().__init__(function_name, traceback_str, cause, proctitle, pid, ip, actor_repr, actor_id)
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.proctitle = proctitle
        self.pid = pid
        self.ip = ip
        self.actor_repr = actor_repr
        self.actor_id = actor_id

    def as_instanceof_cause(self) -> RayTaskError:
        """Returns this error as an instance of both RayTaskError and the cause's class.

        The class is generated once per cause class and named ``RayTaskError(<Cause>)``. The
        cause's ``__init__`` is never called: the instance gets this error's fields, the
        cause's ``args`` and C-level fields (``errno`` and the like), and reads any other
        attribute from ``cause``.

        Returns:
            The new instance, or ``self`` when the cause cannot be mixed in: it is missing, not
            an ``Exception`` (``SystemExit`` must not end the caller), a shoal error already, or
            its class cannot be subclassed.
        """
        cause = self.cause
        if not isinstance(cause, Exception) or isinstance(cause, RayError):
            return self
        if isinstance(self, type(cause)):
            return self
        cls = _instanceof_cause_class(type(cause))
        if cls is None:
            return self
        try:
            error = cls.__new__(cls)
            error.__dict__.update(self.__dict__)
            _copy_native_fields(cause, error)
            error.args = cause.args
        except Exception:
            return self
        return error

    def _header(self) -> str:
        title = self.proctitle or f"shoal::{self.function_name}()"
        details = []
        if self.pid is not None:
            details.append(f"pid={self.pid}")
        if self.ip:
            details.append(f"ip={self.ip}")
        if self.actor_repr:
            details.append(f"repr={self.actor_repr}")
        return f"{title} ({', '.join(details)})" if details else title

    def __str__(self) -> str:
        body = _drop_internal_frames(self.traceback_str.strip("\n").splitlines())
        if body and body[0].startswith("Traceback (most recent call last)"):
            body = body[1:]
        if self.cause is not None:
            tail = _exception_only(self.cause)
            if tail not in "\n".join(body):
                body.extend(tail.splitlines())
        return "\n".join([self._header(), *body])

    def __reduce__(self):
        # The cause is pickled so that loading it never calls its __init__, and a generated
        # class is rebuilt from the cause's class rather than looked up by name.
        fields = (
            self.function_name,
            self.traceback_str,
            _PortableException(self.cause),
            self.proctitle,
            self.pid,
            self.ip,
            self.actor_repr,
            self.actor_id,
        )
        extra = {k: v for k, v in self.__dict__.items() if k not in _TASK_ERROR_FIELDS}
        cls = None if type(self).__dict__.get("_generated") else type(self)
        return (_restore_task_error, (cls, fields, extra))

    def _render_traceback_(self) -> list[str]:
        """Lines IPython shows in place of the local traceback: the remote one.

        Returns:
            ``RayTaskError(<Cause>): <header>`` followed by the remote frames and the cause.
        """
        lines = str(self).splitlines()
        lines = name_cell_frames(lines, shell_cell_numbers(), linecache.getline)
        return [f"{type(self).__name__}: {lines[0]}", *lines[1:]]


def shell_cell_numbers() -> dict:
    """The running IPython shell's map from cell file names to execution counts ({} outside one)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return dict(getattr(getattr(shell, "compile", None), "_filename_map", None) or {})


def _fold_inner_failure(function_name: str, outer_tb: str, inner: RayTaskError) -> str:
    inner_text = str(inner)
    # The outer traceback ends by printing the inner error it re-raised; that text follows in
    # full below, so cut the outer one at the line where it starts.
    cut = outer_tb.find(inner_text.splitlines()[0])
    if cut >= 0:
        outer_tb = outer_tb[: outer_tb.rfind("\n", 0, cut) + 1]
    outer_tb = outer_tb.rstrip()
    if outer_tb:
        link = (
            f"Task {function_name!r} failed because task {inner.function_name!r}, whose result it waited for, failed:"
        )
    else:
        link = f"An argument of task {function_name!r} is the result of task {inner.function_name!r}, which failed:"
    return "\n".join(part for part in (outer_tb, link, inner_text) if part)


# Fields of C-level exception classes (OSError.errno, StopIteration.value, ...) and user
# __slots__ live in descriptors, not __dict__. Dunder descriptors (__class__, __traceback__,
# ...) and `args` are not the cause's data and are left alone.
_DESCRIPTOR_TYPES = (types.MemberDescriptorType, types.GetSetDescriptorType)


def _copy_native_fields(source: BaseException, target: Any) -> None:
    """Copies descriptor-held fields onto ``target``, an exception or a dict."""
    for klass in type(source).__mro__[:-1]:
        for name, value in vars(klass).items():
            if name.startswith("__") or name == "args":
                continue
            if not isinstance(value, _DESCRIPTOR_TYPES):
                continue
            try:
                if isinstance(target, dict):
                    target[name] = getattr(source, name)
                else:
                    setattr(target, name, getattr(source, name))
            except (AttributeError, TypeError, ValueError):
                pass


def _getattr_from_cause(self, name: str) -> Any:
    # Only reached when normal lookup fails; `cause` itself may be unset while unpickling.
    cause = self.__dict__.get("cause")
    if cause is None or name.startswith("__"):
        raise AttributeError(name)
    return getattr(cause, name)


_TASK_ERROR_FIELDS = frozenset(
    {"function_name", "traceback_str", "cause", "proctitle", "pid", "ip", "actor_repr", "actor_id"}
)


def _restore_task_error(cls: type[RayTaskError] | None, fields: tuple, extra: dict) -> RayTaskError:
    """Unpickling factory; ``cls`` is None for a generated ``RayTaskError(<Cause>)`` class."""
    if cls is None:
        error = RayTaskError(*fields).as_instanceof_cause()
    else:
        error = cls.__new__(cls)
        RayTaskError.__init__(error, *fields)
    error.__dict__.update(extra)
    return error


class _PortableException:
    """Pickles an exception so that loading it does not call its ``__init__``.

    BaseException's own pickling re-calls ``cls(*args)``, which breaks for the many exception
    classes whose ``__init__`` takes other arguments than it passes to ``super().__init__``.
    Exceptions that define their own pickling are left to it.
    """

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException | None) -> None:
        self.exc = exc

    def __reduce__(self):
        exc, cls = self.exc, type(self.exc)
        if (
            not isinstance(exc, BaseException)
            or cls.__reduce__ is not BaseException.__reduce__
            or cls.__reduce_ex__ is not object.__reduce_ex__
        ):
            return (_identity, (exc,))
        fields = {}
        _copy_native_fields(exc, fields)
        return (_rebuild_exception, (cls, exc.args, getattr(exc, "__dict__", None), fields))


def _identity(value: Any) -> Any:
    return value


def _rebuild_exception(cls: type, args: tuple, state: dict | None, fields: dict):
    exc = cls.__new__(cls, *args)
    exc.args = args
    if state:
        exc.__setstate__(state)
    for name, value in fields.items():
        setattr(exc, name, value)
    return exc


# Reentrant: generating a class runs the cause's __init_subclass__, which may land back here.
_CLASS_LOCK = threading.RLock()
_CLASS_CACHE: dict[type, type[RayTaskError] | None] = {}


def _instanceof_cause_class(cause_cls: type) -> type[RayTaskError] | None:
    with _CLASS_LOCK:
        if cause_cls in _CLASS_CACHE:
            return _CLASS_CACHE[cause_cls]
        name = f"RayTaskError({cause_cls.__name__})"

        def fill(namespace: dict) -> None:
            namespace.update(
                __module__=__name__,
                __qualname__=name,
                __doc__=f"A remote task raised {cause_cls.__qualname__}.",
                __getattr__=_getattr_from_cause,
                _generated=True,
            )

        try:
            new_class = types.new_class(name, (RayTaskError, cause_cls), exec_body=fill)
            cls: type[RayTaskError] | None = cast("type[RayTaskError]", new_class)
        except Exception:  # final classes, layout or metaclass conflicts, picky __init_subclass__
            cls = None
        _CLASS_CACHE[cause_cls] = cls
        return cls


class TaskCancelledError(RayError):
    """The task was cancelled, or a task it depends on was.

    Args:
        task_id: Id of the cancelled task, if known.
        error_message: Text to use instead of the default message.
    """

    def __init__(self, task_id: Any = None, error_message: str | None = None) -> None:
        if error_message is None:
            error_message = (
                f"Task {task_id} was cancelled."
                if task_id is not None
                else "This task or one of its dependencies was cancelled."
            )
        super().__init__(error_message)
        self.task_id = task_id


class CrossLanguageError(RayError):
    """An exception raised by code written in another language."""


class UnserializableException(RayError):
    """A task's exception reached this process but could not be unpickled here.

    Args:
        original_stack_trace: Text of the original exception and its traceback, captured when
            it was serialized.
    """

    def __init__(self, original_stack_trace: str) -> None:
        super().__init__(
            "The task raised an exception that cannot be unpickled in this process (is its "
            "class importable here?). The original error was:\n" + original_stack_trace
        )
        self.original_stack_trace = original_stack_trace


# --------------------------------------------------------------------------- process deaths

_SIGNAL_CAUSES = {
    "SIGKILL": "the system ran out of memory and the kernel's OOM killer chose this process, "
    "or something sent it SIGKILL (kill -9)",
    "SIGSEGV": "a crash in native code (a bug in a C extension or library, or a stack overflow from deep recursion)",
    "SIGABRT": "native code aborted (a failed C/C++ assertion or a memory-corruption check)",
    "SIGTERM": "something asked it to stop: a shutdown, a job scheduler, a container limit or a user",
    "SIGXCPU": "a CPU-time or file-size limit (ulimit) was exceeded",
    "SIGPIPE": "it wrote to a pipe or socket whose other end was closed",
}
for _alias, _same in (
    ("SIGBUS", "SIGSEGV"),
    ("SIGILL", "SIGSEGV"),
    ("SIGFPE", "SIGSEGV"),
    ("SIGINT", "SIGTERM"),
    ("SIGHUP", "SIGTERM"),
    ("SIGQUIT", "SIGTERM"),
    ("SIGXFSZ", "SIGXCPU"),
):
    _SIGNAL_CAUSES[_alias] = _SIGNAL_CAUSES[_same]
_UNKNOWN_DEATH_CAUSES = "an out-of-memory kill, os._exit() or a crash in native code"


def _signal_name(signal_number: int) -> str | None:
    try:
        return signal.Signals(signal_number).name
    except ValueError:
        return None


def format_worker_death(
    pid: int | None,
    exitcode: int | None = None,
    signal_number: int | None = None,
    last_task: str | None = None,
) -> str:
    """Explains a worker process's unexpected death in one paragraph a user can act on.

    Args:
        pid: Process id of the worker, if known.
        exitcode: Its exit status, if known. A negative value ``-N`` means "killed by signal N",
            as ``subprocess`` and ``multiprocessing`` report it.
        signal_number: The signal that killed it, if known; wins over ``exitcode``.
        last_task: Name of the task it was running when it died, if any.

    Returns:
        The message, for example ``"The worker process (pid 1234) died unexpectedly: killed by
        signal 9 (SIGKILL) while running task 'f'. Likely causes: ..."``.
    """
    if signal_number is None and exitcode is not None and exitcode < 0:
        signal_number = -exitcode
    if signal_number is not None:
        name = _signal_name(int(signal_number))
        how = f": killed by signal {int(signal_number)}" + (f" ({name})" if name else "")
        causes = _SIGNAL_CAUSES.get(name or "", "another process or a resource limit sent it this signal")
    elif exitcode is not None:
        how = f": it exited with code {exitcode}"
        if exitcode == 0:
            causes = "the task code called sys.exit() or os._exit(0), which end the worker"
        else:
            causes = (
                f"the task code called os._exit({exitcode}) or sys.exit({exitcode}), or the "
                "interpreter hit a fatal error (see the worker's stderr)"
            )
            shell_signal = _signal_name(exitcode - 128) if 128 < exitcode < 192 else None
            if shell_signal:
                causes += (
                    f"; exit code {exitcode} is also how shells and containers report death "
                    f"by signal {exitcode - 128} ({shell_signal})"
                )
    else:
        how, causes = "", _UNKNOWN_DEATH_CAUSES
    during = f" while running task {last_task!r}" if last_task else ""
    process = "The worker process" + (f" (pid {pid})" if pid is not None else "")
    return f"{process} died unexpectedly{how}{during}. Likely causes: {causes}."


class WorkerCrashedError(RayError):
    """The worker running a task died before the task finished.

    Args:
        message: What happened; see ``format_worker_death``. A generic text when omitted.
    """

    _default_message = (
        "The worker died unexpectedly while running this task. "
        + _UNKNOWN_DEATH_CAUSES.capitalize()
        + " are the usual causes; check the worker's output for details."
    )


class LocalRayletDiedError(RayError):
    """The node manager of the node running the task died."""

    _default_message = "The node manager of this task's node died; its tasks cannot complete."


class NodeDiedError(RayError):
    """The node running a task or actor died (it stopped answering heartbeats).

    Args:
        message: Details of the failure, shown before a short explanation.
    """

    def __init__(self, message: str | None = None) -> None:
        super().__init__(_with_hint(message, "The node this task ran on died. Tasks with retries left run elsewhere."))


class OutOfMemoryError(RayError):
    """The task was killed because its node was running out of memory.

    Args:
        message: Details of the kill, shown before advice on avoiding it.
    """

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            _with_hint(
                message,
                "The node was running out of memory, so the task was killed. Use less memory per "
                "task, run fewer tasks per node (request more memory or CPUs per task), or add nodes.",
            )
        )


# --------------------------------------------------------------------------- actor errors


class RayActorError(RayError):
    """An actor could not run a method: it died, or it is unavailable for now.

    ``ActorDiedError`` and ``ActorUnavailableError`` are the specific cases.

    Args:
        actor_id: Hex id of the actor, if known.
        error_msg: The message.
        actor_init_failed: Whether the actor's constructor raised.
        preempted: Whether the actor's node was preempted.
    """

    def __init__(
        self,
        actor_id: str | None = None,
        error_msg: str = "The actor failed before finishing this task.",
        actor_init_failed: bool = False,
        preempted: bool = False,
    ) -> None:
        super().__init__(error_msg)
        self.actor_id = actor_id
        self.error_msg = error_msg
        self._actor_init_failed = actor_init_failed
        self._preempted = preempted

    @property
    def actor_init_failed(self) -> bool:
        """Whether the actor died because its constructor raised."""
        return self._actor_init_failed

    @property
    def preempted(self) -> bool:
        """Whether the actor died because its node was preempted."""
        return self._preempted


class ActorDiedError(RayActorError):
    """The actor is dead, so the method call cannot run.

    Args:
        cause: The constructor's ``RayTaskError`` when ``__init__`` raised, or a message string
            (for example from ``format_worker_death``), or None when unknown.
        actor_id: Hex id of the actor.
        class_name: The actor's class name.
        name: The actor's registered name, if any.
        namespace: The namespace of that name.
        pid: The actor process's pid.
        ip: The address of its node.
        preempted: Whether the actor's node was preempted.

    Attributes:
        cause: The constructor's RayTaskError, or None.
    """

    def __init__(
        self,
        cause: Any = None,
        *,
        actor_id: str | None = None,
        class_name: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        pid: int | None = None,
        ip: str | None = None,
        preempted: bool = False,
    ) -> None:
        detail = cause if isinstance(cause, str) else None
        task_error = cause if isinstance(cause, RayTaskError) else None
        if task_error is not None:
            who = f"The actor {class_name}" if class_name else "The actor"
            text = f"{who} died because its constructor raised an error:\n{task_error}"
        else:
            lines = ["The actor died unexpectedly before finishing this task."]
            for label, value in (
                ("class_name", class_name),
                ("actor_id", actor_id),
                ("pid", pid),
                ("name", name),
                ("namespace", namespace),
                ("ip", ip),
            ):
                if value not in (None, ""):
                    lines.append(f"\t{label}: {value}")
            if detail:
                lines.append(detail)
            text = "\n".join(lines)
        super().__init__(actor_id, text, task_error is not None, preempted)
        self.cause = task_error
        self.class_name = class_name
        self.name = name
        self.namespace = namespace
        self.pid = pid
        self.ip = ip


class ActorUnavailableError(RayActorError):
    """The actor cannot be reached right now but may come back (it may be restarting).

    Args:
        error_message: Why it is unavailable.
        actor_id: Hex id of the actor.
    """

    def __init__(self, error_message: str, actor_id: str | None = None) -> None:
        which = f"The actor {actor_id}" if actor_id else "The actor"
        super().__init__(
            actor_id,
            f"{which} is unavailable: {error_message}. The call may or may not have run; calls made later may succeed.",
        )


class ActorAlreadyExistsError(RayError, ValueError):
    """An actor with the requested name already exists in the namespace.

    Also a ``ValueError``, which is what code written against Ray catches here.

    Args:
        name: The requested actor name.
        namespace: The namespace searched.
    """

    def __init__(self, name: str, namespace: str | None = None) -> None:
        where = f" in namespace {namespace!r}" if namespace else ""
        super().__init__(
            f"An actor named {name!r} already exists{where}. Choose another name, or pass "
            "get_if_exists=True to reuse the existing actor."
        )
        self.name = name
        self.namespace = namespace


class AsyncioActorExit(RayError):
    """Raised inside an async actor to make it exit on purpose (``exit_actor()``)."""

    _default_message = "The async actor exited on purpose."


class PendingCallsLimitExceeded(RayError):
    """Too many calls are queued on an actor (its ``max_pending_calls`` limit)."""

    _default_message = (
        "Too many calls are pending on this actor (max_pending_calls reached); wait for some "
        "to finish before submitting more."
    )


# --------------------------------------------------------------------------- scheduling


class TaskUnschedulableError(RayError):
    """The task can never be scheduled, for example its placement target is gone.

    Args:
        error_message: Why it cannot be scheduled.
    """

    def __init__(self, error_message: str) -> None:
        super().__init__(f"The task cannot be scheduled: {error_message}")
        self.error_message = error_message


class ActorUnschedulableError(RayError):
    """The actor can never be scheduled, for example its placement target is gone.

    Args:
        error_message: Why it cannot be scheduled.
    """

    def __init__(self, error_message: str) -> None:
        super().__init__(f"The actor cannot be scheduled: {error_message}")
        self.error_message = error_message


class PlacementGroupSchedulingError(RayError):
    """A placement group cannot be created or its bundles cannot be placed."""

    _default_message = "The placement group cannot be scheduled."


class TaskPlacementGroupRemoved(RayError):
    """The placement group the task was to run in has been removed."""

    _default_message = "The placement group this task was scheduled into has been removed."


class ActorPlacementGroupRemoved(RayError):
    """The placement group the actor was to run in has been removed."""

    _default_message = "The placement group this actor was scheduled into has been removed."


class RuntimeEnvSetupError(RayError):
    """The task's or actor's runtime environment could not be set up.

    Args:
        error_message: What failed while setting it up.
    """

    def __init__(self, error_message: str | None = None) -> None:
        text = "Failed to set up the runtime environment."
        super().__init__(f"{text}\n{error_message}" if error_message else text)
        self.error_message = error_message


# --------------------------------------------------------------------------- system errors


class RaySystemError(RayError):
    """The runtime itself failed (a lost connection, a dead service).

    Args:
        client_exc: The underlying exception or message.
        traceback_str: Where it happened, if known.
    """

    def __init__(self, client_exc: Any, traceback_str: str | None = None) -> None:
        text = f"System error: {client_exc}"
        if traceback_str:
            text += f"\ntraceback: {traceback_str}"
        super().__init__(text)
        self.client_exc = client_exc
        self.traceback_str = traceback_str


class RayChannelError(RaySystemError):
    """A compiled-graph channel was closed or broke."""


class RayChannelTimeoutError(RayChannelError, TimeoutError):
    """A compiled-graph channel read or write timed out."""


class RayCgraphCapacityExceeded(RaySystemError):
    """A compiled graph has more executions in flight than its buffers allow."""


class AuthenticationError(RayError):
    """A client presented a missing or wrong cluster token."""


class OufOfBandObjectRefSerializationException(RayError):
    """An ObjectRef was pickled outside the runtime's serializer, so it cannot be tracked.

    The name keeps Ray's spelling so that code catching it by name works unchanged.
    """


class ObjectRefStreamEndOfStreamError(RayError):
    """A streaming generator has no more items."""

    _default_message = "The generator has no more items."


# --------------------------------------------------------------------------- objects


class ObjectStoreFullError(RayError):
    """The object store is full of objects still in use and nothing can be evicted.

    Args:
        message: Details, shown before advice.
    """

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            _with_hint(
                message,
                "The object store is full of objects that are still referenced. Drop references "
                "you no longer need (`del ref`), or give the store more memory.",
            )
        )


class OutOfDiskError(RayError):
    """The object store is full and the disk it spills to is full too.

    Args:
        message: Details, shown before advice.
    """

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            _with_hint(
                message,
                "The object cannot be stored: the object store is full and the local disk used "
                "for spilling is over capacity. Free disk space or drop object references.",
            )
        )


class PlasmaObjectNotAvailable(RayError):
    """An object was not available in the local store when asked for without waiting."""

    _default_message = "The object is not available in the local object store."


class GetTimeoutError(RayError, TimeoutError):
    """``get()`` (or ``wait()``) gave up before the objects were ready.

    Also a built-in ``TimeoutError``.
    """

    _default_message = "get() timed out: the requested objects were not ready in time."


class ObjectLostError(RayError):
    """An object cannot be retrieved because every copy of it was lost.

    Subclasses give more specific reasons.

    Args:
        object_ref_hex: Hex id of the object.
        owner_address: Address of the worker that owns it, if known.
        call_site: Where the ObjectRef was created, if recorded.
        reason: Why the object is gone, when more is known than the class says.
    """

    def __init__(
        self,
        object_ref_hex: str,
        owner_address: str | None = None,
        call_site: str | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        self.object_ref_hex = object_ref_hex
        self.owner_address = owner_address
        self.call_site = call_site
        where = (
            f" The ObjectRef was created at:\n  {call_site}"
            if call_site
            else " (Where its ObjectRef was created was not recorded.)"
        )
        super().__init__(f"Failed to retrieve object {object_ref_hex}.{where}\n\n{reason or self._reason()}")

    def _reason(self) -> str:
        return (
            "All copies of the object were lost, most likely because the node(s) holding "
            "them died, and it could not be rebuilt."
        )


class ObjectFetchTimedOutError(ObjectLostError):
    """Fetching an object timed out because no node reported a copy."""

    def _reason(self) -> str:
        return "Fetching the object timed out: no node reported having a copy of it."


class ReferenceCountingAssertionError(ObjectLostError, AssertionError):
    """An object was freed while a reference to it still existed (a runtime bug)."""

    def _reason(self) -> str:
        return (
            "Reference counting deleted the object although a reference to it still existed. "
            "This is a bug in shoal; please report it."
        )


class OwnerDiedError(ObjectLostError):
    """The object's owner (the worker that created its ref) died, taking the object's metadata."""

    def _reason(self) -> str:
        owner = f" at {self.owner_address}" if self.owner_address else ""
        return (
            f"The object's owner{owner} has died. The owner is the worker that created the "
            "ObjectRef with .remote() or put(); once it is gone the object can neither be "
            "fetched nor rebuilt. Check that worker's output for why it died."
        )


class ObjectReconstructionFailedError(ObjectLostError):
    """The object was lost and rebuilding it by re-running its task failed."""

    def _reason(self) -> str:
        return (
            "The object was lost and could not be rebuilt: re-running the task that "
            "created it failed, or the object was created with put() and cannot be rebuilt."
        )


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectLostError):
    """The object was lost and its task has used up its retries."""

    def _reason(self) -> str:
        return (
            "The object was lost and could not be rebuilt: the task that creates it has "
            "already been retried max_retries times."
        )


class ObjectReconstructionFailedLineageEvictedError(ObjectLostError):
    """The object was lost and the record of how to rebuild it had been dropped."""

    def _reason(self) -> str:
        return (
            "The object was lost and could not be rebuilt: its lineage (the tasks needed to "
            "recreate it) was evicted to save memory."
        )


RAY_EXCEPTION_TYPES = [
    cls for cls in map(globals().get, __all__) if isinstance(cls, type) and issubclass(cls, RayError)
]
