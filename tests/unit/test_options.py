"""Unit tests for the task/actor option table: errors name the option; resources are derived."""

from __future__ import annotations

import pytest
from shoal.options import ACTOR_OPTIONS, METHOD_OPTIONS, TASK_OPTIONS, task_resources, validate

WHAT = "remote function f"


def check(**options):
    return validate(options, TASK_OPTIONS, WHAT)


def test_valid_options_are_returned_unchanged():
    options = {
        "num_cpus": 0.5,
        "num_gpus": 1,
        "resources": {"custom": 2},
        "memory": 1 << 30,
        "num_returns": 2,
        "max_retries": -1,
        "retry_exceptions": [ValueError, KeyError],
        "name": "step",
        "scheduling_strategy": "SPREAD",
        "runtime_env": {"env_vars": {"A": "1"}, "pip": ["x"]},
    }
    assert validate(dict(options), TASK_OPTIONS, WHAT) == options


def test_none_means_default_for_every_option():
    assert check(**{name: None for name in TASK_OPTIONS}) == {name: None for name in TASK_OPTIONS}


def test_empty_options_are_valid():
    assert check() == {}


# -- names ----------------------------------------------------------------------------------


def test_unknown_option_names_it_and_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        check(num_cpu=1)
    message = str(info.value)
    assert "'num_cpu'" in message and WHAT in message
    for name in ("num_cpus", "num_gpus", "resources", "max_retries", "runtime_env"):
        assert name in message


def test_actor_only_option_is_unknown_for_tasks_and_vice_versa():
    with pytest.raises(ValueError, match="max_restarts"):
        check(max_restarts=1)
    with pytest.raises(ValueError, match="max_retries"):
        validate({"max_retries": 1}, ACTOR_OPTIONS, "actor A")
    assert validate({"max_restarts": 3, "lifetime": "detached"}, ACTOR_OPTIONS, "actor A")
    assert validate({"concurrency_group": "io"}, METHOD_OPTIONS, "method m")


# -- types ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value",
    [
        ("num_cpus", "1"),
        ("num_gpus", [1]),
        ("resources", [("x", 1)]),
        ("memory", "1GB"),
        ("max_retries", 1.5),
        ("name", 3),
        ("runtime_env", "env"),
        ("num_returns", 1.0),
        ("placement_group_bundle_index", "0"),
    ],
)
def test_wrong_type_is_a_type_error_naming_the_option(name, value):
    with pytest.raises(TypeError) as info:
        check(**{name: value})
    assert repr(name) in str(info.value)
    assert type(value).__name__ in str(info.value)


@pytest.mark.parametrize("name", ["num_cpus", "num_gpus", "memory", "max_retries", "num_returns"])
def test_bool_for_a_number_is_a_type_error(name):
    with pytest.raises(TypeError, match=f"'{name}'.*bool"):
        check(**{name: True})


def test_bool_accepted_where_bool_is_the_type():
    assert check(retry_exceptions=False, enable_task_events=True, placement_group_capture_child_tasks=True)


# -- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["num_cpus", "num_gpus", "memory"])
def test_negative_amounts_are_value_errors(name):
    with pytest.raises(ValueError, match=f"'{name}'.*>= 0"):
        check(**{name: -0.5})


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_amounts_are_value_errors(value):
    # NaN passes `< 0`; the node manager's to_shape() then fails on int(round(nan * 1000)).
    with pytest.raises(ValueError, match="'num_cpus'"):
        check(num_cpus=value)
    with pytest.raises(ValueError, match="'resources'"):
        check(resources={"custom": value})


def test_zero_amounts_are_allowed():
    assert check(num_cpus=0, num_gpus=0.0, memory=0)


@pytest.mark.parametrize("name, hint", [("CPU", "num_cpus"), ("GPU", "num_gpus"), ("memory", "memory")])
def test_builtin_resource_in_resources_suggests_the_option(name, hint):
    with pytest.raises(ValueError) as info:
        check(resources={name: 1})
    assert "'resources'" in str(info.value)
    assert hint in str(info.value)


@pytest.mark.parametrize(
    "resources, fragment",
    [({"x": -1}, "'x'"), ({"x": "1"}, "'x'"), ({"x": True}, "'x'"), ({1: 1}, "strings")],
)
def test_bad_custom_resources(resources, fragment):
    with pytest.raises(ValueError, match=fragment):
        check(resources=resources)


def test_max_retries_minus_one_means_forever_below_is_rejected():
    assert check(max_retries=-1)
    with pytest.raises(ValueError, match="'max_retries'"):
        check(max_retries=-2)


@pytest.mark.parametrize("value", [0, 1, 5, "dynamic", "streaming"])
def test_num_returns_accepted(value):
    assert check(num_returns=value)


@pytest.mark.parametrize("value", [-1, "many"])
def test_num_returns_rejected(value):
    with pytest.raises(ValueError, match="'num_returns'"):
        check(num_returns=value)


@pytest.mark.parametrize("value", [True, False, [ValueError], (KeyError, OSError), [], [KeyboardInterrupt]])
def test_retry_exceptions_accepted(value):
    assert check(retry_exceptions=value)


@pytest.mark.parametrize("value", [["ValueError"], [ValueError, "KeyError"], [int], [ValueError()]])
def test_retry_exceptions_rejected(value):
    with pytest.raises((TypeError, ValueError), match="'retry_exceptions'"):
        check(retry_exceptions=value)


def test_runtime_env_unknown_field_rejected():
    with pytest.raises(ValueError) as info:
        check(runtime_env={"env_vars": {}, "docker": "img"})
    assert "'runtime_env'" in str(info.value) and "docker" in str(info.value)


@pytest.mark.parametrize("env_vars", [{"A": 1}, {1: "a"}, {"A": None}, ["A=1"]])
def test_runtime_env_env_vars_must_be_str_to_str(env_vars):
    with pytest.raises(ValueError, match="env_vars"):
        check(runtime_env={"env_vars": env_vars})


def test_runtime_env_known_fields_accepted():
    env = {
        "env_vars": {"A": "1"},
        "working_dir": ".",
        "py_modules": [],
        "pip": [],
        "conda": {},
        "config": {},
        "excludes": [],
    }
    assert check(runtime_env=env)


def test_scheduling_strategy_values():
    class Strategy:
        _scheduling_kind = "NODE_AFFINITY"

    assert check(scheduling_strategy="DEFAULT")
    assert check(scheduling_strategy=Strategy())
    with pytest.raises(ValueError, match="'scheduling_strategy'"):
        check(scheduling_strategy="PACK")
    with pytest.raises(ValueError, match="'scheduling_strategy'"):
        check(scheduling_strategy=object())


def test_actor_specific_values():
    with pytest.raises(ValueError, match="'lifetime'"):
        validate({"lifetime": "forever"}, ACTOR_OPTIONS, "actor A")
    with pytest.raises(ValueError, match="'max_concurrency'"):
        validate({"max_concurrency": 0}, ACTOR_OPTIONS, "actor A")
    with pytest.raises(TypeError, match="'max_concurrency'"):
        validate({"max_concurrency": True}, ACTOR_OPTIONS, "actor A")


# -- task_resources -------------------------------------------------------------------------


def test_task_resources_default_one_cpu():
    assert task_resources({}) == {"CPU": 1.0}
    assert task_resources({"num_cpus": None}) == {"CPU": 1.0}
    assert task_resources({}, default_cpus=0) == {}


def test_task_resources_collects_every_amount_as_float():
    resources = task_resources({"num_cpus": 2, "num_gpus": 0.5, "memory": 1024, "resources": {"custom": 3}})
    assert resources == {"CPU": 2.0, "GPU": 0.5, "memory": 1024.0, "custom": 3.0}
    assert all(type(amount) is float for amount in resources.values())


def test_task_resources_omits_zero_amounts():
    assert task_resources({"num_cpus": 0, "num_gpus": 0, "memory": 0, "resources": {"custom": 0, "other": 1}}) == {
        "other": 1.0
    }


def test_task_resources_does_not_mutate_options():
    options = {"resources": {"custom": 1}}
    task_resources(options)
    assert options == {"resources": {"custom": 1}}
