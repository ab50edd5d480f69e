"""Actors: `@shoal.remote` on a class, handles, method calls, named and detached actors.

An actor is a dedicated worker process holding one instance of the class. Handles are
reference counted like ObjectRefs (through a per-actor handle token), so a non-detached actor
is stopped when the last handle anywhere in the cluster is gone.
"""

from __future__ import annotations

import inspect
import pickle

from . import exceptions
from . import options as option_table
from ._core import client as client_module
from ._core import feasibility, serialization, session, task_context
from ._core.actor_manager import handle_token
from ._core.protocol import ActorSpec, CreateActor, GetActor, KillActor
from .object_ref import ObjectRef
from .remote_function import RemoteFunction, build_task, placed_resources, strategy_wire, submit_call

DEFAULT_MAX_CONCURRENCY_ASYNC = 1000


def method(*args, **method_options):
    """Set options of an actor method: `@shoal.method(num_returns=2)`."""
    option_table.validate(method_options, option_table.METHOD_OPTIONS, "actor method")

    def decorate(function):
        function.__shoal_method_options__ = dict(method_options)
        return function

    if len(args) == 1 and callable(args[0]) and not method_options:
        return decorate(args[0])
    if args:
        raise TypeError("@shoal.method takes keyword options only, e.g. @shoal.method(num_returns=2)")
    return decorate


def _method_table(cls) -> dict:
    methods = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("__") and name != "__call__":
            continue
        function = member._function if isinstance(member, RemoteFunction) else member
        if not callable(function) or inspect.isclass(function):
            continue
        opts = dict(getattr(function, "__shoal_method_options__", {}))
        opts["is_async"] = inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
        methods[name] = opts
    return methods


class ActorClass:
    """A class whose instances live in their own worker process. Use `Cls.remote(...)`."""

    def __init__(self, cls, actor_options: dict):
        option_table.validate(actor_options, option_table.ACTOR_OPTIONS, f"actor class {cls.__qualname__}")
        self._cls = cls
        self._options = dict(actor_options)
        self._methods = _method_table(cls)
        self._definition = None
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__doc__ = cls.__doc__
        self.__module__ = cls.__module__

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"Actors cannot be instantiated directly. Instead of '{self._cls.__name__}()', "
            f"use '{self._cls.__name__}.remote()'."
        )

    def __reduce__(self):
        return (ActorClass, (self._cls, self._options))

    def remote(self, *args, **kwargs) -> ActorHandle:
        """Start the actor; returns its handle at once (the constructor runs remotely)."""
        return self._create(args, kwargs, self._options)

    def options(self, **actor_options) -> _BoundActorOptions:
        option_table.validate(actor_options, option_table.ACTOR_OPTIONS, f"actor class {self._cls.__qualname__}")
        return _BoundActorOptions(self, {**self._options, **actor_options})

    def bind(self, *args, **kwargs):
        raise NotImplementedError("shoal does not implement Ray's DAG API (.bind) yet; use .remote()")

    def _create(self, args: tuple, kwargs: dict, opts: dict) -> ActorHandle:
        client = session.client()
        if self._definition is None:
            self._definition = serialization.pickle_definition(self._cls)
        class_id, payload = self._definition
        client.export_function(class_id, payload)
        is_async = any(m["is_async"] for m in self._methods.values())
        max_concurrency = opts.get("max_concurrency") or (DEFAULT_MAX_CONCURRENCY_ASYNC if is_async else 1)
        name = opts.get("name")
        namespace = opts.get("namespace") or session.current_namespace()
        if name is not None and not name:
            raise ValueError("actor name must be a non-empty string")
        lifetime_opts = dict(opts)
        lifetime_opts.setdefault("num_cpus", 0)
        lifetime = option_table.task_resources(lifetime_opts, default_cpus=0)
        placement = option_table.task_resources(opts, default_cpus=1)
        if opts.get("num_cpus") is None:
            placement["CPU"] = max(placement.get("CPU", 0), 1.0)
        placement = placed_resources(placement, opts)
        lifetime = placed_resources(lifetime, opts)
        feasibility.check_feasible(placement, self._cls.__name__)
        groups = opts.get("concurrency_groups") or {}
        meta = {
            "class_name": self._cls.__name__,
            "methods": self._methods,
            "max_task_retries": opts.get("max_task_retries") or 0,
        }
        prepared = {
            "resources": placement,
            "num_returns": 1,
            "max_retries": 0,
            "retry_exceptions": False,
            "retry_types": None,
            "name": f"{self._cls.__name__}.__init__",
            "env_vars": ((opts.get("runtime_env") or {}).get("env_vars")) or None,
            "strategy": strategy_wire(opts.get("scheduling_strategy")),
            "function_name": f"{self._cls.__name__}.__init__",
        }
        actor_id = session.next_task_id()  # starts with the owner node's tag, like task ids
        hosting = {
            "class_name": self._cls.__name__,
            "resources": lifetime,  # what get_assigned_resources() reports inside the actor
            "name": name,
            "is_async": is_async,
            "max_concurrency": max_concurrency,
            "concurrency_groups": groups,
            "method_groups": {
                m: o["concurrency_group"] for m, o in self._methods.items() if o.get("concurrency_group")
            },
        }
        creation, refs, packed_args = build_task(
            client, class_id, prepared, args, kwargs, actor_id=actor_id, actor_creation=hosting
        )
        del refs  # the constructor's return value is not exposed
        meta_bytes = pickle.dumps(meta)
        spec = ActorSpec(
            actor_id,
            client.client_id,
            creation,
            placement,
            lifetime,
            name,
            namespace,
            opts.get("lifetime") == "detached",
            opts.get("max_restarts") or 0,
            opts.get("max_task_retries") or 0,
            self._cls.__name__,
            meta_bytes,
        )
        handle = ActorHandle(actor_id, meta)
        if name is None:
            client.send(CreateActor(0, spec, False))
            del packed_args
            return handle
        reply = client.request(
            lambda request_id: CreateActor(request_id, spec, bool(opts.get("get_if_exists"))), timeout_s=60
        )
        del packed_args
        if reply is None:
            raise exceptions.RaySystemError("the node manager did not answer an actor creation")
        if reply.error == "exists":
            raise exceptions.ActorAlreadyExistsError(name, namespace)
        if reply.actor_id != actor_id:
            return ActorHandle(reply.actor_id, pickle.loads(reply.handle_meta))
        return handle


class _BoundActorOptions:
    def __init__(self, actor_class: ActorClass, merged: dict):
        self._actor_class = actor_class
        self._merged = merged

    def remote(self, *args, **kwargs) -> ActorHandle:
        return self._actor_class._create(args, kwargs, self._merged)


class ActorMethod:
    """A method of a remote actor: call `.remote(*args)` to run it."""

    def __init__(self, handle: ActorHandle, name: str, method_options: dict):
        self._handle = handle
        self._name = name
        self._options = method_options

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"Actor methods cannot be called directly. Instead of '{self._name}()', use '{self._name}.remote()'."
        )

    def options(self, **method_options) -> ActorMethod:
        option_table.validate(method_options, option_table.METHOD_OPTIONS, f"actor method {self._name}")
        return ActorMethod(self._handle, self._name, {**self._options, **method_options})

    def remote(self, *args, **kwargs):
        return self._handle._call(self._name, args, kwargs, self._options)

    def bind(self, *args, **kwargs):
        raise NotImplementedError("shoal does not implement Ray's DAG API (.bind) yet; use .remote()")


class ActorHandle:
    """A reference to a running actor. Picklable: pass it to tasks and other actors."""

    def __init__(self, actor_id: bytes, meta: dict):
        self._actor_id = actor_id
        self._meta = meta
        self._prepared: dict = {}
        client = client_module.current()
        self._client = client
        if client is not None:
            client.outgoing.append((handle_token(actor_id), 1))

    def __del__(self):
        client = getattr(self, "_client", None)
        if client is not None:
            try:
                client.outgoing.append((handle_token(self._actor_id), -1))
            except Exception:
                pass

    def __reduce__(self):
        serialization.note_contained_ref(handle_token(self._actor_id))
        return (_rebuild_handle, (self._actor_id, pickle.dumps(self._meta)))

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        methods = self._meta["methods"]
        if name not in methods:
            raise AttributeError(f"'{self._meta['class_name']}' actor has no method {name!r}")
        return ActorMethod(self, name, {k: v for k, v in methods[name].items() if k != "is_async"})

    def __eq__(self, other) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __repr__(self) -> str:
        return f"Actor({self._meta['class_name']}, {self._actor_id.hex()})"

    @property
    def _ray_actor_id(self):
        from ._core.ids import ActorID

        return ActorID(self._actor_id)

    def _call(self, name: str, args: tuple, kwargs: dict, method_options: dict):
        client = session.client()
        key = (name, tuple(sorted(method_options.items()))) if method_options else name
        prepared = self._prepared.get(key)
        if prepared is None:
            num_returns = method_options.get("num_returns")
            retry = method_options.get("retry_exceptions", False)
            retries = method_options.get("max_task_retries")
            prepared = self._prepared[key] = {
                "resources": {},
                "num_returns": 1 if num_returns is None else num_returns,
                "max_retries": self._meta.get("max_task_retries", 0) if retries is None else retries,
                "retry_exceptions": bool(retry),
                "retry_types": serialization.dumps_plain(tuple(retry)) if isinstance(retry, (list, tuple)) else None,
                "name": method_options.get("name") or f"{self._meta['class_name']}.{name}",
                "env_vars": None,
                "strategy": None,
                "function_name": name,
            }
        return submit_call(client, b"", prepared, args, kwargs, actor_id=self._actor_id)


def _rebuild_handle(actor_id: bytes, meta: bytes) -> ActorHandle:
    return ActorHandle(actor_id, pickle.loads(meta))


class Actor:
    """Base-class style actors: subclass, mark methods with @remote, start with `create()`.

    Example:
        class Adder(shoal.Actor):
            def __init__(self, value):
                self.value = value

            @shoal.remote
            def add(self, x, y):
                return self.value + x + y

        actor = Adder.create(value=5)
        print(actor.add.remote(2, 3).get())  # 10
    """

    @classmethod
    def _actor_class(cls) -> ActorClass:
        cached = cls.__dict__.get("_shoal_actor_class")
        if cached is None:
            plain = {name: member._function for name, member in vars(cls).items() if isinstance(member, RemoteFunction)}
            hosted = type(cls.__name__, (cls,), plain)
            hosted.__qualname__ = cls.__qualname__
            hosted.__module__ = cls.__module__
            cached = ActorClass(hosted, {})
            cls._shoal_actor_class = cached
        return cached

    @classmethod
    def create(cls, *args, **kwargs) -> ActorHandle:
        return cls._actor_class().remote(*args, **kwargs)

    @classmethod
    def options(cls, **actor_options):
        return cls._actor_class().options(**actor_options)


def exit_actor() -> None:
    """End the current actor after this call; its pending calls fail with ActorDiedError."""
    executor = task_context.process.executor
    if executor is None or task_context.process.actor_id is None:
        raise TypeError("exit_actor() can only be called inside an actor method")
    from ._core.worker import ActorExitRequest

    host = executor.actor_host
    if host is not None and host.is_async:
        raise exceptions.AsyncioActorExit()
    raise ActorExitRequest(0)


def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    """A handle to the live actor registered under `name` in `namespace`.

    Raises:
        ValueError: No such actor.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"get_actor() expects a non-empty actor name, got {name!r}")
    client = session.client()
    namespace = namespace or session.current_namespace()
    reply = client.request(lambda request_id: GetActor(request_id, name, namespace), timeout_s=60)
    if reply is None:
        raise exceptions.RaySystemError("the node manager did not answer get_actor()")
    if reply.actor_id is None:
        raise ValueError(f"Failed to look up actor with name '{name}' in namespace '{namespace}'.")
    return ActorHandle(reply.actor_id, pickle.loads(reply.handle_meta))


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    """Stop an actor now. With no_restart=False it restarts if max_restarts allows."""
    if not isinstance(actor, ActorHandle):
        raise ValueError(f"kill() expects an actor handle, got {type(actor).__name__}")
    client = session.client()
    client.send(KillActor(actor._actor_id, bool(no_restart)))


__all__ = [
    "Actor",
    "ActorClass",
    "ActorHandle",
    "ActorMethod",
    "ObjectRef",
    "exit_actor",
    "get_actor",
    "kill",
    "method",
]
