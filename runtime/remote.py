"""The `@remote` decorator: functions become RemoteFunctions, classes become ActorClasses."""

from __future__ import annotations

import inspect


def remote(*args, **options):
    """Make a function a task (or a class an actor) that runs on the cluster.

    Use bare (`@shoal.remote`) or with options (`@shoal.remote(num_cpus=2, num_returns=2)`).

    Raises:
        TypeError: Applied to something that is neither a function nor a class, or given
            positional arguments besides the target.
        ValueError: An unknown option or a bad option value.
    """
    if len(args) == 1 and not options and callable(args[0]):
        return _make(args[0], {})
    if args:
        raise TypeError(
            "@shoal.remote takes either a function/class or keyword options, e.g. "
            "@shoal.remote(num_cpus=2); got positional arguments " + ", ".join(type(a).__name__ for a in args)
        )

    def decorate(target):
        return _make(target, options)

    return decorate


def _make(target, options: dict):
    if inspect.isclass(target):
        from .actor import ActorClass

        return ActorClass(target, options)
    if callable(target):
        from .remote_function import RemoteFunction

        return RemoteFunction(target, options)
    raise TypeError(f"@shoal.remote expects a function or a class, got {type(target).__name__}")
