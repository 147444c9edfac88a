"""The blue/green policy as SageMaker's DeploymentConfig, and as the settings' [rollout] table."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.errors import ConfigError
from mlops.policy import BlueGreenPolicy
from mlops.settings import load_settings
from tests.conftest import make_settings

ALARMS = ["taxi-prod-5xx", "taxi-prod-4xx", "taxi-prod-latency", "taxi-prod-model-signal"]


def _validate_update_endpoint(deployment_config: dict) -> None:
    """Raise botocore's ParamValidationError unless UpdateEndpoint would accept it."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("UpdateEndpoint").input_shape
    params = {
        "EndpointName": "taxi-prod",
        "EndpointConfigName": "taxi-prod-v4",
        "DeploymentConfig": deployment_config,
    }
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        from botocore.exceptions import ParamValidationError

        raise ParamValidationError(report=report.generate_report())


@pytest.mark.parametrize(
    ("routing", "expected"),
    [
        (
            {"type": "CANARY", "canary_size": 10, "wait_interval_s": 300},
            {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 300,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            },
        ),
        (
            {"type": "LINEAR", "linear_step": 20, "wait_interval_s": 120.5},
            {
                "Type": "LINEAR",
                "WaitIntervalInSeconds": 121,  # never a shorter bake than asked
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 20},
            },
        ),
        (
            {"type": "ALL_AT_ONCE", "wait_interval_s": 0},
            {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
        ),
    ],
)
def test_deployment_config_is_what_update_endpoint_takes(routing: dict, expected: dict) -> None:
    policy = BlueGreenPolicy.model_validate(
        {"routing": routing, "termination_wait_s": 60, "max_execution_s": 1800}
    )
    config = policy.to_deployment_config(ALARMS)
    assert config == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": expected,
            "TerminationWaitInSeconds": 60,
            "MaximumExecutionTimeoutInSeconds": 1800,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": a} for a in ALARMS]},
    }
    _validate_update_endpoint(config)


def test_the_validator_used_above_does_refuse_a_bad_config() -> None:
    from botocore.exceptions import ParamValidationError

    config = BlueGreenPolicy().to_deployment_config(ALARMS)
    config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] = 7
    with pytest.raises(ParamValidationError, match="Type"):
        _validate_update_endpoint(config)


def test_no_alarms_means_no_auto_rollback_key() -> None:
    config = BlueGreenPolicy().to_deployment_config([])
    assert "AutoRollbackConfiguration" not in config
    _validate_update_endpoint(config)


@pytest.mark.parametrize(
    ("data", "alarms", "match"),
    [
        ({"routing": {"type": "CANARY", "canary_size": 12.5}}, [], "whole percents"),
        ({"routing": {"wait_interval_s": 0}, "max_execution_s": 300}, [], "at least 600s"),
        ({}, [f"a{i}" for i in range(11)], "at most 10"),
    ],
)
def test_what_sagemaker_cannot_take_is_refused_with_the_fix(
    data: dict, alarms: list[str], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        BlueGreenPolicy.model_validate(data).to_deployment_config(alarms)


def test_flat_rollout_keys_of_a_project_file_still_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mlops.toml").write_text(
        "[rollout]\n"
        'traffic_routing = "LINEAR"\n'
        "linear_step = 25\n"
        "wait_interval_s = 30\n"
        "termination_wait_s = 5\n"
        "max_execution_s = 900\n"
        'prod_endpoint = "{model}-live"\n'
        "[rollout.alarms]\n"
        "min_requests = 7\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLOPS_CONFIG", raising=False)
    monkeypatch.setenv("MLOPS_ROLLOUT__CANARY_SIZE", "15")
    settings = load_settings(work_dir=tmp_path / ".mlops")
    policy = settings.rollout.policy()
    assert type(policy) is BlueGreenPolicy
    assert policy.routing.type == "LINEAR"
    assert policy.routing.green_shares() == [25.0, 50.0, 75.0, 100.0]
    assert (policy.routing.wait_interval_s, policy.routing.canary_size) == (30.0, 15.0)
    assert (policy.termination_wait_s, policy.max_execution_s) == (5.0, 900.0)
    assert policy.alarms.min_requests == 7
    assert settings.rollout.prod_endpoint == "{model}-live"


def test_a_flat_key_and_the_routing_table_may_not_disagree(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="contradicts routing.type"):
        make_settings(
            tmp_path, rollout={"traffic_routing": "LINEAR", "routing": {"type": "CANARY"}}
        )


def test_settings_check_fields_alone_and_the_policy_checks_them_together(tmp_path: Path) -> None:
    # options may still shorten the waits, so the settings load; the policy refuses
    settings = make_settings(tmp_path, rollout={"max_execution_s": 20})
    with pytest.raises(ConfigError, match="max_execution_s is 20s"):
        settings.rollout.policy()
    assert settings.rollout.policy(wait_interval_s=5, termination_wait_s=0).max_execution_s == 20
