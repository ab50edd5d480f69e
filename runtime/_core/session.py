"""The process's session: its core client, task ids, namespace, and the hooks front ends set.

A driver has one between `init()` and `shutdown()`; a worker has one for its whole life. The
public API (`api`, `actor`, `remote_function`, `util/`) reads and changes it only through this
module, so no module reaches into another's private names. It owns no sockets or threads: the
client does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import task_context
from .client import CoreClient
from .driver_logs import DriverLogPrinter
from .ids import TaskIDFactory


class Session:
    """One connection of this process to a cluster (and the node it started, if any)."""

    def __init__(
        self,
        client: CoreClient,
        head: Any,
        init_key: tuple | None,
        log_to_driver: bool,
        namespace: str,
        log_printer: DriverLogPrinter | None = None,
    ):
        self.client = client
        self.head = head  # the embedded node this driver started (stopped with the session), or None
        self.init_key = init_key  # init()'s arguments, to tell a repeated init from a different one
        self.log_to_driver = log_to_driver
        self.namespace = namespace
        self.log_printer = log_printer  # a driver's: prints worker output when no front end takes it
        self.log_handler: Callable[[list], None] | None = None


@dataclass
class FrontEndHooks:
    """What a front end (the Jupyter layer) plugs into the driver; see `shoal.util.output`.

    Every hook runs on a hot path: keep them quick.
    """

    log_handler: Callable[[list], None] | None = None  # gets worker output instead of printing it
    submit_listeners: list = field(default_factory=list)  # called with each submitted task id (hex)
    wait_listeners: list = field(default_factory=list)  # called when a get/wait starts blocking
    # Rewrites the lines of a remote traceback for display (e.g. cell files as `Cell In[3]`).
    traceback_filter: Callable[[list[str]], list[str]] | None = None
    shutdown_listeners: list = field(default_factory=list)  # called as shutdown() begins, cluster still up


logger = logging.getLogger(__name__)
hooks = FrontEndHooks()
lock = threading.RLock()  # held while a session starts or stops
_current: Session | None = None
_task_ids = TaskIDFactory()
_starter: Callable[[], Any] | None = None


def shutdown_started() -> None:
    """Tell the shutdown listeners that `shutdown()` begins (errors are logged, not raised)."""
    for listener in list(hooks.shutdown_listeners):
        try:
            listener()
        except Exception:
            logger.warning("shoal shutdown listener %r failed", listener, exc_info=True)


def current() -> Session | None:
    return _current


def set_current(session: Session | None) -> None:
    global _current
    _current = session


def set_starter(starter: Callable[[], Any]) -> None:
    """What starts a session on first use (the public `init()` with no arguments)."""
    global _starter
    _starter = starter


def client() -> CoreClient:
    """The client to submit through, starting a local cluster first if there is none yet."""
    session = _current
    if session is None:
        if _starter is None:
            raise RuntimeError("shoal is not initialized: call shoal.init() first")
        _starter()
        session = _current
        assert session is not None, "the session starter did not start a session"
    return session.client


def attach_worker(worker_client: CoreClient) -> None:
    """In a worker process: the API talks through the worker's own client."""
    _task_ids.reset()
    set_current(Session(worker_client, None, None, False, ""))


def next_task_id() -> bytes:
    """A fresh task id (also used for actor, placement-group and put ids): the owner's tag first."""
    return _task_ids.next()


def current_namespace() -> str:
    """The namespace named actors are looked up in: the task's, else the driver's."""
    spec = task_context.current_spec()
    if spec is not None and spec.namespace:
        return spec.namespace
    session = _current
    if session is not None and session.namespace:
        return session.namespace
    return task_context.process.namespace or "default"


def belongs_to_ended_session(ref_client: CoreClient | None) -> bool:
    """Whether a ref made through `ref_client` (None: made before any session) outlived it."""
    if ref_client is None:
        return False
    session = _current
    return session is None or session.client is not ref_client


__all__ = [
    "FrontEndHooks",
    "Session",
    "attach_worker",
    "belongs_to_ended_session",
    "client",
    "current",
    "current_namespace",
    "hooks",
    "lock",
    "next_task_id",
    "set_current",
    "set_starter",
]
