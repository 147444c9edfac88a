"""The local autoscaler's arithmetic and the instance bookkeeping of a variant."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mlops.backends.local.gateway.autoscaler import desired_count
from mlops.backends.local.gateway.state import (
    AutoscalingState,
    EndpointState,
    InstanceState,
    ScalingActivity,
    VariantState,
)
from mlops.backends.local.gateway.variants import Instance, Variant
from mlops.errors import ConfigError
from mlops.settings import load_settings


def _policy(**overrides: object) -> AutoscalingState:
    values: dict[str, object] = {
        "min_instances": 1,
        "max_instances": 4,
        "target_invocations_per_instance": 60.0,
    }
    values.update(overrides)
    return AutoscalingState.model_validate(values)


@pytest.mark.parametrize(
    ("invocations", "window_s", "expected"),
    [
        (0, 60, 1),  # idle: the minimum
        (60, 60, 1),  # exactly on target
        (61, 60, 2),  # just above: one more
        (120, 60, 2),
        (10, 5, 2),  # 120 a minute over a 5 s window
        (10_000, 60, 4),  # capped at the maximum
    ],
)
def test_desired_count_tracks_the_target(invocations: int, window_s: float, expected: int) -> None:
    assert desired_count(invocations, window_s, _policy()) == expected


def test_desired_count_keeps_the_minimum() -> None:
    assert desired_count(0, 60, _policy(min_instances=2, max_instances=3)) == 2


def test_bounds_are_checked_together() -> None:
    with pytest.raises(ValidationError, match="max_instances=1 is below min_instances=2"):
        _policy(min_instances=2, max_instances=1)
    with pytest.raises(ValidationError):
        _policy(target_invocations_per_instance=0)


def test_settings_refuse_bounds_that_cross(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_AUTOSCALING__MIN_INSTANCES", "3")
    monkeypatch.setenv("MLOPS_AUTOSCALING__MAX_INSTANCES", "2")
    with pytest.raises(ConfigError, match="max_instances=2 is below min_instances=3"):
        load_settings()


def test_activities_keep_the_last_fifty() -> None:
    policy = _policy()
    for n in range(60):
        policy.record(ScalingActivity(variant="v1", from_count=n, to_count=n + 1,
                                      invocations_per_instance=1.0, cause="test"))  # fmt: skip
    assert len(policy.activities) == 50 and policy.activities[-1].from_count == 59


def test_a_state_saved_before_instances_has_its_process_as_first_instance() -> None:
    old = {"name": "v1", "model_dir": "/m", "port": 9001, "pid": 42, "status": "InService"}
    state = VariantState.model_validate(old)
    assert state.instance_count == 1
    assert [(i.id, i.port, i.pid, i.status) for i in state.instances] == [
        (0, 9001, 42, "InService")
    ]
    endpoint = EndpointState.model_validate({"name": "ep", "port": 9000, "variants": [old]})
    assert endpoint.autoscaling is None
    assert EndpointState.model_validate_json(endpoint.model_dump_json()) == endpoint


def _variant(*statuses: str) -> Variant:
    instances = [
        InstanceState(id=n, port=9000 + n, pid=100 + n, status=s)  # type: ignore[arg-type]
        for n, s in enumerate(statuses)
    ]
    return Variant(VariantState(name="v1", model_dir="/m", instances=instances))


def test_requests_go_to_the_instance_with_fewest_in_flight() -> None:
    variant = _variant("InService", "InService", "InService")
    a, b, c = variant.instances
    a.outstanding, b.outstanding, c.outstanding = 3, 1, 2
    assert variant.pick() is b
    assert variant.pick(exclude=[b]) is c
    b.draining = True  # scaled in: no new request
    assert variant.pick() is c
    assert variant.serving == 2


def test_instances_starting_or_failed_take_no_requests() -> None:
    variant = _variant("Creating", "Failed")
    assert variant.pick() is None and variant.serving == 0
    variant.instances.append(Instance(InstanceState(id=2, port=9002, status="InService")))
    assert variant.pick() is variant.instances[2]
    assert variant.next_instance_id() == 3


def test_a_variant_serves_while_any_instance_does() -> None:
    variant = _variant("Failed", "InService")
    state = variant.sync()
    assert state.status == "InService" and state.failure_reason is None
    assert (state.port, state.pid) == (9000, 100)  # its first instance's
    assert state.serving_instances == 1
    variant.instances[1].state.status = "Failed"
    variant.instances[1].state.failure_reason = "process exited"
    state = variant.sync()
    assert state.status == "Failed" and state.failure_reason == "process exited"
