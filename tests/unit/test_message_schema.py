"""Unit tests for the schema check node managers run on every record before a handler sees it."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from shoal._core import message_schema, protocol

from tests import message_fuzz
from tests.unit.test_protocol import _task_spec


def _decoded(message):
    return protocol.decode(protocol.encode(message))


@pytest.mark.parametrize("sample", message_fuzz.base_samples(), ids=lambda m: type(m).__name__)
def test_valid_samples_of_every_kind_pass(sample):
    assert message_schema.problem(_decoded(sample)) is None


def test_every_field_has_a_spec_and_annotations_are_honoured():
    for cls in protocol.registered_kinds().values():
        specs = message_schema.field_specs(cls)
        assert list(specs) == list(cls.FIELDS)
        for field in dataclasses.fields(cls):
            if "None" in field.type or field.default is None:
                assert specs[field.name].accepts(None), (cls.__name__, field.name)


def test_every_wrong_type_in_every_field_is_caught_before_a_handler():
    caught = 0
    for label, frame in message_fuzz.variants():
        try:
            message = protocol.decode(frame)
        except ValueError:
            caught += 1
            continue
        assert message_schema.problem(message) is not None, f"{label} passed the schema"
        caught += 1
    assert caught > 3000  # every kind, every field, nested records included


@pytest.mark.parametrize(
    "payload",
    [
        [77, b"x" * 20, 0, 10, 12345],  # the example: an int mac
        [77, b"x" * 20, 0, 10, "mac"],
        [77, b"x" * 20, 0, 10, [1]],
        [77, 5, 0, 10, b"m" * 32],
        [77, b"x" * 20, "0", 10, b"m" * 32],
        [77, b"x" * 20, 0, None, b"m" * 32],
        [77, b"x" * 20, -1, 10, b"m" * 32],
        [77, b"x" * 20, 0, 2**40, b"m" * 32],
        [77, b"x" * 3, 0, 10, b"m" * 32],
        [77, b"x" * 20, 0, 10, b"m" * 31],
    ],
)
def test_data_port_requests_are_checked_for_type_and_size(payload):
    message = protocol.decode(msgpack.packb(payload, use_bin_type=True))
    problem = message_schema.problem(message)
    assert problem is not None and problem.startswith("PullChunk.")


def test_a_signed_request_of_the_right_shape_passes():
    assert message_schema.problem(protocol.PullChunk(b"x" * 20, 0, 8 << 20, b"m" * 32)) is None


def test_problem_names_the_field_and_what_was_found():
    problem = message_schema.problem(protocol.PullChunk(b"x" * 20, 0, 10, 12345))
    assert problem == "PullChunk.mac: bytes of length 32 expected, got int"
    nested = message_schema.problem(_decoded(protocol.SubmitTasks([_task_spec(), _task_spec(resources={"CPU": "1"})])))
    assert nested.startswith("SubmitTasks.specs: [1]: TaskSpec.resources: ['CPU']:")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("resources", {"CPU": float("inf")}),
        ("resources", {"CPU": -1.0}),
        ("resources", {"CPU": True}),
        ("arg_refs", [b"ok" * 10, 7]),
        ("strategy", ["NODE_AFFINITY"]),
        ("strategy", ["NODE_AFFINITY", "not hex", False]),
        ("strategy", ["SPREAD", 1]),
        ("env_vars", {"A": 1}),
        ("num_returns", -1),
        ("max_retries", True),
    ],
)
def test_task_spec_values_that_would_break_scheduling_later(field, value):
    assert message_schema.problem(_task_spec(**{field: value})) is not None


def test_ints_are_not_bools_and_floats_take_ints():
    assert message_schema.problem(protocol.Keepalive(True)) is not None
    assert message_schema.problem(protocol.TaskResult(b"t" * 16, [], False, 0)) is None


def test_node_table_rows_need_their_keys_with_their_types():
    row = dict(message_fuzz._NODE_ROW)
    assert message_schema.problem(protocol.NodeTable([row])) is None
    del row["data_endpoint"]  # optional: older nodes sent none
    assert message_schema.problem(protocol.NodeTable([row])) is None
    for key, wrong in (("endpoint", 7), ("total", {"CPU": "x"}), ("alive", None)):
        broken = dict(row, **{key: wrong})
        assert key in message_schema.problem(protocol.NodeTable([broken]))
    assert "missing" in message_schema.problem(protocol.NodeTable([{"node_id": b"n" * 16}]))


def test_a_non_record_is_a_problem_not_a_crash():
    assert message_schema.problem(object()) == "object is not a shoal record"
