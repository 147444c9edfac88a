"""The SageMaker endpoint backend's requests, built without I/O and checked against
botocore's service models (the same check botocore makes when they are sent)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlops.backends import SignalReading, VariantSpec
from mlops.backends.endpoint import PlannedRequest
from mlops.backends.sagemaker.config import SageMakerConfig
from mlops.backends.sagemaker.endpoint_requests import (
    ResolvedVariant,
    plan_create,
    plan_update,
    validate_plan,
)
from mlops.backends.sagemaker.guardrails import alarm_kind, signal_metric_request, signal_value
from mlops.backends.sagemaker.naming import (
    check_endpoint_name,
    endpoint_config_name,
    is_endpoint_alarm,
    is_endpoint_config,
    sagemaker_model_name,
    scaling_resource_id,
)
from mlops.errors import ConfigError
from mlops.policy import AlarmThresholds
from mlops.rollout.managed import judge_pairs
from mlops.settings import Settings
from tests.conftest import make_settings

CONFIG = "taxi-prod-20261130120000"


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return make_settings(
        tmp_path,
        backend="sagemaker",
        aws={"region": "eu-west-1"},
        sagemaker={
            "role_arn": "arn:aws:iam::123456789012:role/jobs",
            "bucket": "models-bucket",
            "image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlops:2",
            "endpoint_instance_type": "ml.c5.xlarge",
            "endpoint_instance_count": 2,
        },
        rollout={"wait_interval_s": 120, "max_execution_s": 1800},
        **overrides,
    )


def _variant(name: str, version: str, **spec: object) -> ResolvedVariant:
    return ResolvedVariant(
        spec=VariantSpec(name, f"models:/taxi/{version}", **spec),  # type: ignore[arg-type]
        model_name="taxi",
        version=version,
        sagemaker_model=sagemaker_model_name("taxi-prod", name, "abcd1234"),
        model_data_url=f"s3://models-bucket/mlops/models/taxi/{version}/model.tar.gz",
    )


def test_a_create_plan_is_models_config_endpoint_then_scaling(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        autoscaling={"enabled": True, "min_instances": 2, "max_instances": 6},
        serving={
            "capture": {"destination": "s3://capture-bucket/live/", "sampling_percentage": 30}
        },
    )
    config = SageMakerConfig.from_settings(settings)
    plan = validate_plan(
        plan_create(
            config, settings, "taxi-prod", CONFIG,
            [_variant("v3", "3"), _variant("shadow", "4", shadow=True, instance_count=3)],
        )
    )
    assert [(r.service, r.operation, r.after) for r in plan] == [
        ("sagemaker", "CreateModel", None),
        ("sagemaker", "CreateModel", None),
        ("sagemaker", "CreateEndpointConfig", None),
        ("sagemaker", "CreateEndpoint", None),
        ("application-autoscaling", "RegisterScalableTarget", "the endpoint is InService"),
        ("application-autoscaling", "PutScalingPolicy", None),
    ]
    params = plan[2].params
    assert params["ProductionVariants"] == [
        {
            "VariantName": "v3",
            "ModelName": "taxi-prod-v3-abcd1234",
            "InitialInstanceCount": 2,
            "InstanceType": "ml.c5.xlarge",
            "InitialVariantWeight": 1.0,
        }
    ]
    assert params["ShadowProductionVariants"][0]["InitialInstanceCount"] == 3
    assert params["DataCaptureConfig"] == {
        "EnableCapture": True,
        "InitialSamplingPercentage": 30,
        "DestinationS3Uri": "s3://capture-bucket/live",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {
            "CsvContentTypes": ["text/csv"],
            "JsonContentTypes": ["application/json"],
        },
    }
    tags = {t["Key"]: t["Value"] for t in plan[0].params["Tags"]}
    assert tags == {"mlops:model": "taxi", "mlops:endpoint": "taxi-prod", "mlops:version": "3"}
    assert plan[0].params["PrimaryContainer"]["ModelDataUrl"].endswith("/taxi/3/model.tar.gz")
    assert plan[4].params["ResourceId"] == scaling_resource_id("taxi-prod", "v3")
    assert (plan[4].params["MinCapacity"], plan[4].params["MaxCapacity"]) == (2, 6)


def test_capture_off_s3_goes_to_the_bucket_and_no_scaling_when_disabled(tmp_path: Path) -> None:
    settings = _settings(tmp_path)  # capture destination: a local folder by default
    plan = plan_create(
        SageMakerConfig.from_settings(settings), settings, "taxi-prod", CONFIG,
        [_variant("v3", "3")],
    )
    assert [r.operation for r in plan] == ["CreateModel", "CreateEndpointConfig", "CreateEndpoint"]
    capture = plan[1].params["DataCaptureConfig"]
    assert capture["DestinationS3Uri"] == "s3://models-bucket/mlops/capture"


def test_only_shadows_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with pytest.raises(ConfigError, match="no production variant"):
        plan_create(
            SageMakerConfig.from_settings(settings), settings, "taxi-prod", CONFIG,
            [_variant("s", "3", shadow=True)],
        )


def test_an_update_carries_the_policy_and_four_alarms(tmp_path: Path) -> None:
    settings = _settings(tmp_path, autoscaling={"enabled": True})
    policy = settings.rollout.policy(traffic_routing="LINEAR", linear_step=25)
    plan = validate_plan(
        plan_update(
            SageMakerConfig.from_settings(settings), settings, "taxi-prod", CONFIG,
            _variant("v4", "4"), policy,
        )
    )
    assert [r.operation for r in plan] == [
        "CreateModel", "CreateEndpointConfig", *["PutMetricAlarm"] * 4, "UpdateEndpoint",
        "RegisterScalableTarget", "PutScalingPolicy",
    ]
    alarms = [r.params for r in plan[2:6]]
    names = [a["AlarmName"] for a in alarms]
    assert [alarm_kind(n) for n in names] == ["5xx_rate", "4xx_rate", "latency_p99", "model_signal"]
    assert all(n.startswith(f"mlops-{CONFIG}-") for n in names)
    assert alarms[2]["Threshold"] == policy.alarms.max_latency_p99_ms * 1000  # microseconds
    assert alarms[3]["Namespace"] == "mlops" and alarms[3]["Threshold"] == 0.2
    update = plan[6].params
    assert update["DeploymentConfig"] == policy.to_deployment_config(names)
    assert update["EndpointConfigName"] == CONFIG
    assert plan[7].after == "the update completed"
    no_gate = plan_update(
        SageMakerConfig.from_settings(settings), settings, "taxi-prod", CONFIG,
        _variant("v4", "4"), policy, signal_gate=False,
    )
    assert sum(r.operation == "PutMetricAlarm" for r in no_gate) == 3


def test_a_request_botocore_would_refuse_is_named() -> None:
    bad = PlannedRequest("sagemaker", "CreateEndpoint", {"EndpointName": "x"})
    with pytest.raises(ConfigError, match="sagemaker CreateEndpoint would be refused") as info:
        validate_plan([bad])
    assert "EndpointConfigName" in str(info.value)


def test_names_follow_the_convention() -> None:
    now = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    assert endpoint_config_name("taxi-prod", now) == CONFIG
    assert is_endpoint_config(CONFIG, "taxi-prod")
    assert not is_endpoint_config(CONFIG, "taxi")  # another endpoint's, not a prefix's
    assert is_endpoint_alarm(f"mlops-{CONFIG}-5xx-rate", "taxi-prod")
    assert not is_endpoint_alarm(f"mlops-{CONFIG}-5xx-rate", "taxi")
    long = sagemaker_model_name("e" * 48, "variant-name-long")
    assert len(long) <= 63 and long[-9] == "-"
    with pytest.raises(ConfigError, match="not valid on SageMaker"):
        check_endpoint_name("taxi_prod")
    with pytest.raises(ConfigError, match="not valid on SageMaker"):
        check_endpoint_name("e" * 49)  # no room for the config's timestamp


def test_the_published_signal_breaches_exactly_when_the_gate_fires() -> None:
    thresholds = AlarmThresholds(min_requests=10)
    agree = judge_pairs(thresholds, False, [(10.0 + i, 10.0 + i) for i in range(30)])
    assert (agree.pairs, agree.share, agree.fired) == (30, 0.0, False)
    apart = judge_pairs(thresholds, False, [(16.0 + i, 10.0 + i) for i in range(30)])
    assert apart.fired and apart.share == 1.0 and "differ" in (apart.reason or "")
    few = judge_pairs(thresholds, False, [(16.0, 10.0)] * 5)  # under min_requests
    assert few.share is None and not few.fired
    # a share over the threshold that is not yet unlikely noise stays at the threshold
    noisy = SignalReading(pairs=12, share=0.25, fired=False)
    assert signal_value(noisy, 0.2) == 0.2
    assert signal_value(apart, 0.2) == 1.0 and signal_value(few, 0.2) == 0.0
    request = validate_plan([signal_metric_request("taxi-prod", CONFIG, apart, 0.2)])[0]
    datum = request.params["MetricData"][0]
    assert datum["MetricName"] == "ModelSignalShift" and datum["Value"] == 1.0
    assert {d["Name"] for d in datum["Dimensions"]} == {"EndpointName", "EndpointConfigName"}


def test_the_sagemaker_endpoint_backend_refuses_bad_settings_first(tmp_path: Path) -> None:
    from mlops.backends import ENDPOINT_BACKENDS, get_endpoint_backend

    assert "sagemaker" in ENDPOINT_BACKENDS
    settings = make_settings(
        tmp_path, backend="sagemaker", aws={"region": "eu-west-1"},
        sagemaker={"role_arn": "arn:aws:iam::123456789012:role/jobs", "bucket": "b-1x",
                   "training_image": "builtin-xgboost-is-not-this"},
    )
    with pytest.raises(ConfigError, match="a SageMaker endpoint runs the project image"):
        get_endpoint_backend(settings)
