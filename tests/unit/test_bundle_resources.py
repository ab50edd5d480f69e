"""Unit tests for placement-group resource names: bundle names and reading them back."""

from __future__ import annotations

import os

from shoal._core.ids import TASK_ID_BYTES
from shoal._core.placement_groups import bundle_resource, original_resources


def test_bundle_names_read_back_as_the_names_the_user_wrote():
    group_hex = os.urandom(TASK_ID_BYTES).hex()
    request = {"CPU": 1, "GPU": 0.5, "my_group_gpu": 2, "custom_group_7": 3}
    for index in (0, 11, None):
        placed = {bundle_resource(name, group_hex, index): amount for name, amount in request.items()}
        assert set(placed).isdisjoint(request)
        back = original_resources(placed)
        assert back == request and all(type(amount) is float for amount in back.values())


def test_names_that_only_look_like_bundles_are_kept():
    lookalikes = {"CPU_group_abc": 1, f"CPU_group_0_{'ab' * (TASK_ID_BYTES - 1)}": 2, "node:10.0.0.1": 0.001}
    assert original_resources(lookalikes) == {name: float(amount) for name, amount in lookalikes.items()}
    assert original_resources({}) == {}
