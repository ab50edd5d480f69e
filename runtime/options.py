"""One table of the options that tasks and actors accept, with validation at the call site.

Each option names the types it accepts and a check; unknown names and bad values raise
TypeError/ValueError immediately, naming the option.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    types: tuple
    check: Callable[[Any], str | None] | None = None
    default: Any = None


def _non_negative(value) -> str | None:
    if value is not None and not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if value is not None and value < 0:
        return "must be >= 0"
    return None


def _resources(value) -> str | None:
    if value is None:
        return None
    for name, amount in value.items():
        if not isinstance(name, str):
            return f"resource names must be strings, got {name!r}"
        if name in ("CPU", "GPU", "memory"):
            return f"use the num_cpus / num_gpus / memory options instead of resources={{'{name}': ...}}"
        if not isinstance(amount, numbers.Real) or isinstance(amount, bool):
            return f"resource {name!r} must be a number, got {type(amount).__name__}"
        if not math.isfinite(amount) or amount < 0:
            return f"resource {name!r} must be a finite number >= 0, got {amount}"
    return None


def _num_returns(value) -> str | None:
    if value is not None and value != "dynamic" and value != "streaming" and (not isinstance(value, int) or value < 0):
        return "must be a non-negative int"
    return None


def _max_retries(value) -> str | None:
    if value is not None and value < -1:
        return "must be >= -1 (-1 retries forever)"
    return None


def _retry_exceptions(value) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (list, tuple)) and all(isinstance(t, type) and issubclass(t, BaseException) for t in value):
        return None
    return "must be a bool or a list of exception classes"


def runtime_env_problem(value) -> str | None:
    if value is None:
        return None
    unknown = set(value) - {"env_vars", "working_dir", "py_modules", "pip", "conda", "config", "excludes"}
    if unknown:
        return f"unknown runtime_env fields {sorted(unknown)}"
    env_vars = value.get("env_vars")
    if env_vars is not None:
        if not isinstance(env_vars, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()
        ):
            return "runtime_env['env_vars'] must be a dict of str to str"
    return None


def _strategy(value) -> str | None:
    if value is None or value in ("DEFAULT", "SPREAD"):
        return None
    if hasattr(value, "_scheduling_kind"):
        return None
    return "must be 'DEFAULT', 'SPREAD' or a scheduling strategy object"


_NUMBER = (int, float)

# Options tasks and actors share (resources, placement, environment).
_COMMON_OPTIONS: dict[str, Option] = {
    "num_cpus": Option(_NUMBER, _non_negative),
    "num_gpus": Option(_NUMBER, _non_negative),
    "resources": Option((dict,), _resources),
    "memory": Option(_NUMBER, _non_negative),
    "accelerator_type": Option((str,)),
    "name": Option((str,)),
    "scheduling_strategy": Option((str, object), _strategy),
    "runtime_env": Option((dict,), runtime_env_problem),
    "placement_group": Option((object,)),
    "placement_group_bundle_index": Option((int,)),
    "placement_group_capture_child_tasks": Option((bool,)),
    "label_selector": Option((dict,)),
    "enable_task_events": Option((bool,)),
    "_metadata": Option((dict,)),
}

TASK_OPTIONS: dict[str, Option] = {
    **_COMMON_OPTIONS,
    "num_returns": Option((int, str), _num_returns),
    "max_retries": Option((int,), _max_retries),
    "retry_exceptions": Option((bool, list, tuple), _retry_exceptions),
}

ACTOR_OPTIONS: dict[str, Option] = {
    **_COMMON_OPTIONS,
    "namespace": Option((str,)),
    "lifetime": Option(
        (str,), lambda v: None if v in (None, "detached", "non_detached") else "must be 'detached' or None"
    ),
    "get_if_exists": Option((bool,)),
    "max_restarts": Option((int,), _max_retries),
    "max_task_retries": Option((int,), _max_retries),
    "max_concurrency": Option((int,), lambda v: None if v is None or v >= 1 else "must be >= 1"),
    "concurrency_groups": Option((dict,)),
    "max_pending_calls": Option((int,)),
    "allow_out_of_order_execution": Option((bool,)),
}

METHOD_OPTIONS: dict[str, Option] = {
    "num_returns": Option((int, str), _num_returns),
    "max_task_retries": Option((int,), _max_retries),
    "retry_exceptions": Option((bool, list, tuple), _retry_exceptions),
    "concurrency_group": Option((str,)),
    "name": Option((str,)),
    "enable_task_events": Option((bool,)),
    "_metadata": Option((dict,)),
}


def validate(options: dict, table: dict[str, Option], what: str) -> dict:
    """Check every option against `table`; returns the options unchanged."""
    for name, value in options.items():
        option = table.get(name)
        if option is None:
            raise ValueError(f"Invalid option {name!r} for {what}. Valid options are: {', '.join(sorted(table))}")
        if value is None:
            continue
        if isinstance(value, bool) and bool not in option.types and option.types is not (object,):
            if option.types == _NUMBER or int in option.types:
                raise TypeError(f"option {name!r} for {what} must be {_type_names(option.types)}, got bool")
        if not isinstance(value, option.types):
            raise TypeError(
                f"option {name!r} for {what} must be {_type_names(option.types)}, got {type(value).__name__}"
            )
        if option.check is not None:
            problem = option.check(value)
            if problem:
                raise ValueError(
                    f"option {name!r} for {what} {problem}"
                    if not problem.startswith(("use", "resource", "unknown", "runtime_env"))
                    else f"option {name!r} for {what}: {problem}"
                )
    return options


def _type_names(types: tuple) -> str:
    return " or ".join(t.__name__ for t in types)


def task_resources(options: dict, default_cpus: float = 1.0) -> dict:
    """The resource request of a task or actor from its options."""
    resources = dict(options.get("resources") or {})
    cpus = options.get("num_cpus")
    resources["CPU"] = default_cpus if cpus is None else cpus
    if options.get("num_gpus"):
        resources["GPU"] = options["num_gpus"]
    if options.get("memory"):
        resources["memory"] = options["memory"]
    return {name: float(amount) for name, amount in resources.items() if amount}
