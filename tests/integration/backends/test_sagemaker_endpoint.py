"""The SageMaker endpoint backend against moto in server mode, plus SageMaker's part in
blue/green updates played by :mod:`tests.integration.backends.sagemaker_fleet`.

Models are real: small XGBoost regressors logged and registered in this module's MLflow
store (blue; a twin of blue; a green whose answers are 1.6 times blue's). Every request
goes through botocore's validation to moto; ``UpdateEndpoint`` (which moto lacks) is
recorded after validation and answered by the harness.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from mlops.backends import (
    EndpointBackend,
    ManagedRollout,
    RequestPlanning,
    VariantSpec,
    get_endpoint_backend,
)
from mlops.backends.sagemaker.endpoint import SageMakerEndpointBackend
from mlops.backends.sagemaker.naming import (
    TAG_ENDPOINT,
    TAG_MODEL,
    is_endpoint_alarm,
    scaling_resource_id,
)
from mlops.errors import ConfigError, EndpointError, EndpointNotFoundError
from mlops.rollout import run_rollout
from mlops.settings import Settings
from tests.conftest import AWS_TEST_CREDENTIALS, make_settings
from tests.integration.backends.sagemaker_fleet import REGION, Guardrails, fail_endpoint
from tests.unit.backends._models import FEATURES, frame

pytestmark = pytest.mark.moto

ROLE = "arn:aws:iam::123456789012:role/mlops-endpoints"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops:1.0"
BUCKET = "mlops-sm-endpoints"
MODEL = "fare"
ROLLOUT = {
    "traffic_routing": "CANARY",
    "canary_size": 20,
    "wait_interval_s": 120,
    "termination_wait_s": 60,
    "max_execution_s": 1200,
    "alarms": {"min_requests": 10, "max_signal_shift": 0.2},
}


@pytest.fixture
def aws(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in AWS_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return s3_endpoint


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A module MLflow store with ``fare`` v1 (blue), v2 (blue's twin), v3 (1.6 x blue)."""
    import mlflow
    import xgboost as xgb
    from mlflow.models import infer_signature

    from mlops.tracking import Tags, connect

    root = tmp_path_factory.mktemp("sm-store")
    settings = make_settings(root)
    client = connect(settings)
    x = frame(300)
    y = 2.5 + 1.8 * x["distance"] + 0.1 * x["passengers"]
    versions = {}
    experiment = mlflow.set_experiment(MODEL)
    for label, factor in (("blue", 1.0), ("shifted", 1.6)):
        model = xgb.XGBRegressor(n_estimators=20, max_depth=3, n_jobs=1).fit(x, y * factor)
        with mlflow.start_run(experiment_id=experiment.experiment_id):
            info = mlflow.xgboost.log_model(
                model,
                name="model",
                signature=infer_signature(x.head(), model.predict(x.head())),
                input_example=x.head(30),
                model_format="ubj",
                metadata={"mlops": {"task": "regression", "features": FEATURES}},
            )
        registered = mlflow.register_model(info.model_uri, MODEL)
        client.set_model_version_tag(MODEL, registered.version, Tags.TASK, "regression")
        versions[label] = str(registered.version)
        if label == "blue":  # the twin: blue's own model registered again
            twin = mlflow.register_model(info.model_uri, MODEL)
            client.set_model_version_tag(MODEL, twin.version, Tags.TASK, "regression")
            versions["twin"] = str(twin.version)
    rows = frame(40, seed=7)[FEATURES].astype(float).to_numpy().tolist()
    return {"uri": settings.effective_tracking_uri, "versions": versions, "rows": rows}


def _settings(root: Path, store: dict[str, Any], aws: str, **overrides: Any) -> Settings:
    sagemaker = {
        "role_arn": ROLE,
        "bucket": BUCKET,
        "image_uri": IMAGE,
        "poll_s": 0.01,
        **overrides.pop("sagemaker", {}),
    }
    return make_settings(
        root,
        tracking_uri=store["uri"],
        backend="sagemaker",
        aws={"region": REGION, "endpoint_url": aws},
        sagemaker=sagemaker,
        rollout=ROLLOUT,
        **overrides,
    )


@pytest.fixture
def bucket(aws: str) -> str:
    s3 = boto3.client("s3", endpoint_url=aws, region_name=REGION)
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture
def fleet(
    tmp_path: Path, store: dict[str, Any], aws: str, bucket: str
) -> Iterator[tuple[SageMakerEndpointBackend, Guardrails, Settings]]:
    """A backend on its own boto3 session, SageMaker's guardrails played on that session."""
    settings = _settings(tmp_path, store, aws, autoscaling={"enabled": True})
    session = boto3.session.Session()
    guardrails = Guardrails(session, aws, store["rows"])
    with SageMakerEndpointBackend(settings, session=session) as backend:
        yield backend, guardrails, settings


def _models(aws: str) -> list[str]:
    sm = boto3.client("sagemaker", endpoint_url=aws, region_name=REGION)
    return [m["ModelName"] for m in sm.list_models(MaxResults=100)["Models"]]


def _ref(store: dict[str, Any], label: str) -> str:
    return f"models:/{MODEL}/{store['versions'][label]}"


def test_bad_settings_fail_before_any_request(tmp_path: Path, aws: str) -> None:
    settings = make_settings(
        tmp_path,
        backend="sagemaker",
        aws={"region": REGION, "endpoint_url": aws},
        sagemaker={"bucket": BUCKET},
    )
    with pytest.raises(ConfigError) as info:
        get_endpoint_backend(settings)
    message = str(info.value)
    assert "role" in message and "image" in message and "Nothing was created" in message
    sm = boto3.client("sagemaker", endpoint_url=aws, region_name=REGION)
    assert not [e for e in sm.list_endpoints()["Endpoints"] if e["EndpointName"] == "never"]


def test_endpoint_lifecycle_with_capture_scaling_and_tags(
    fleet: tuple[SageMakerEndpointBackend, Guardrails, Settings], store: dict[str, Any], aws: str
) -> None:
    backend, _, _ = fleet
    assert isinstance(backend, EndpointBackend)
    assert isinstance(backend, ManagedRollout) and isinstance(backend, RequestPlanning)
    blue = _ref(store, "blue")
    described = backend.create_endpoint(
        "fare-life",
        [
            VariantSpec("v1", blue, initial_weight=1.0),
            VariantSpec("shadow", _ref(store, "shifted"), initial_weight=1.0, shadow=True),
        ],
    )
    assert described.status == "InService"
    v1 = described.variant("v1")
    assert v1 is not None and v1.model_ref == blue and v1.model_version == "1"
    assert v1.instance_type == "ml.m5.large"
    sm = boto3.client("sagemaker", endpoint_url=aws, region_name=REGION)
    config = sm.describe_endpoint_config(
        EndpointConfigName=sm.describe_endpoint(EndpointName="fare-life")["EndpointConfigName"]
    )
    capture = config["DataCaptureConfig"]
    assert capture["EnableCapture"] and capture["InitialSamplingPercentage"] == 100
    assert capture["DestinationS3Uri"] == f"s3://{BUCKET}/mlops/capture"
    assert described.capture.destination == f"s3://{BUCKET}/mlops/capture"
    model = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"]["Image"] == IMAGE
    data_url = model["PrimaryContainer"]["ModelDataUrl"]
    assert data_url == f"s3://{BUCKET}/mlops/models/{MODEL}/1/model.tar.gz"
    s3 = boto3.client("s3", endpoint_url=aws, region_name=REGION)
    assert s3.head_object(Bucket=BUCKET, Key=data_url.split("/", 3)[3])["ContentLength"] > 0
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=model["ModelArn"])["Tags"]}
    assert tags[TAG_MODEL] == MODEL and tags[TAG_ENDPOINT] == "fare-life"
    scaling = boto3.client("application-autoscaling", endpoint_url=aws, region_name=REGION)
    targets = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    ids = {t["ResourceId"]: t for t in targets}
    assert scaling_resource_id("fare-life", "v1") in ids
    assert scaling_resource_id("fare-life", "shadow") not in ids  # shadows do not scale
    policies = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    tracking = next(
        p for p in policies if p["ResourceId"] == scaling_resource_id("fare-life", "v1")
    )["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "SageMakerVariantInvocationsPerInstance"
    )
    assert "fare-life" in [d.name for d in backend.list_endpoints()]
    answer = backend.invoke("fare-life", "5.0,1,12\n", target_variant="v1")
    assert answer.ok and answer.body  # moto answers with static data
    assert backend.set_weights("fare-life", {"v1": 2.0})["v1"] == 2.0
    with pytest.raises(EndpointError, match="no production variant"):
        backend.set_weights("fare-life", {"v9": 1.0})
    with pytest.raises(EndpointError, match="already exists"):
        backend.create_endpoint("fare-life", [VariantSpec("v1", blue)])
    backend.delete_endpoint("fare-life")
    with pytest.raises(EndpointNotFoundError, match="fare-life"):
        backend.describe_endpoint("fare-life")
    assert not [m for m in _models(aws) if m.startswith("fare-life-")]


def test_a_failed_endpoint_reports_sagemakers_reason(
    fleet: tuple[SageMakerEndpointBackend, Guardrails, Settings],
    store: dict[str, Any],
) -> None:
    backend, guardrails, _ = fleet
    reason = "The primary container for production variant v1 did not pass the ping check."
    backend.client("sagemaker").meta.events.register(
        "after-call.sagemaker.CreateEndpoint",
        lambda **_: fail_endpoint("fare-failed", reason),
    )
    with pytest.raises(EndpointError, match="did not pass the ping check") as info:
        backend.create_endpoint("fare-failed", [VariantSpec("v1", _ref(store, "blue"))])
    assert "Failed" in str(info.value)
    assert backend.describe_endpoint("fare-failed").last_error == reason


def _rollout(backend: SageMakerEndpointBackend, settings: Settings, store, endpoint, green):
    version = store["versions"][green]
    return run_rollout(
        backend,
        endpoint=endpoint,
        model_name=MODEL,
        green_version=version,
        green_ref=_ref(store, green),
        policy=settings.rollout.policy(),
        smoke_body=b"5.0,1,12\n",
        smoke_rows=1,
        versions={"v1": store["versions"]["blue"]},
        task="regression",
    )


def test_the_update_carries_the_policy_and_all_four_alarms(
    fleet: tuple[SageMakerEndpointBackend, Guardrails, Settings], store: dict[str, Any]
) -> None:
    backend, guardrails, settings = fleet
    backend.create_endpoint("fare-twin", [VariantSpec("v1", _ref(store, "blue"))])
    result = _rollout(backend, settings, store, "fare-twin", "twin")
    assert result.completed, result.reason
    (update,) = guardrails.updates
    config_name = update["EndpointConfigName"]
    assert config_name.startswith("fare-twin-") and len(config_name) == len("fare-twin-") + 14
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy == {
        "TrafficRoutingConfiguration": {
            "Type": "CANARY",
            "WaitIntervalInSeconds": 120,
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 20},
        },
        "TerminationWaitInSeconds": 60,
        "MaximumExecutionTimeoutInSeconds": 1200,
    }
    rollback = update["DeploymentConfig"]["AutoRollbackConfiguration"]
    names = [a["AlarmName"] for a in rollback["Alarms"]]
    assert names == [
        f"mlops-{config_name}-{kind}"
        for kind in ("5xx-rate", "4xx-rate", "latency-p99", "model-signal")
    ]
    assert all(is_endpoint_alarm(n, "fare-twin") for n in names)
    alarms = {a["AlarmName"]: a for a in guardrails.alarms[0]}
    assert set(alarms) == set(names)  # they existed when the update started
    signal = alarms[names[3]]
    assert (signal["Namespace"], signal["MetricName"]) == ("mlops", "ModelSignalShift")
    assert {d["Name"]: d["Value"] for d in signal["Dimensions"]} == {
        "EndpointName": "fare-twin",
        "EndpointConfigName": config_name,
    }
    assert signal["Threshold"] == 0.2 and signal["ComparisonOperator"] == "GreaterThanThreshold"
    latency = alarms[names[2]]
    assert latency["MetricName"] == "ModelLatency" and latency["ExtendedStatistic"] == "p99"
    new_fleet = {
        "EndpointName": "fare-twin",
        "VariantName": f"v{store['versions']['twin']}",
        "EndpointConfigName": config_name,
    }
    assert {d["Name"]: d["Value"] for d in latency["Dimensions"]} == new_fleet
    errors = alarms[names[0]]
    stats = [m["MetricStat"]["Metric"]["MetricName"] for m in errors["Metrics"][:2]]
    assert stats == ["Invocation5XXErrors", "Invocations"] and errors["Threshold"] == 0.01
    for metric in errors["Metrics"][:2]:  # the rate of the new fleet only
        dims = metric["MetricStat"]["Metric"]["Dimensions"]
        assert {d["Name"]: d["Value"] for d in dims} == new_fleet
    # the signal was published from green's capture: the twin agrees with blue on every row
    assert result.timeline and result.timeline[-1]["signal_pairs"] == len(store["rows"])
    assert result.timeline[-1]["signal_differing_share"] == 0.0
    state = backend.describe_endpoint("fare-twin")
    assert [v.name for v in state.variants] == [f"v{store['versions']['twin']}"]
    cw = backend.client("cloudwatch")
    assert not cw.describe_alarms(AlarmNames=names)["MetricAlarms"]  # removed at the end


def test_a_shifted_green_is_rolled_back_on_the_published_signal(
    fleet: tuple[SageMakerEndpointBackend, Guardrails, Settings], store: dict[str, Any]
) -> None:
    backend, guardrails, settings = fleet
    backend.create_endpoint("fare-shift", [VariantSpec("v1", _ref(store, "blue"))])
    result = _rollout(backend, settings, store, "fare-shift", "shifted")
    assert result.outcome == "rolled_back"
    assert result.alarm == "model_signal"
    assert "SageMaker rolled back" in result.reason and "model-signal" in result.reason
    assert [s.ok for s in result.steps] == [False, True]
    assert result.timeline[0]["signal_differing_share"] == 1.0
    cw = backend.client("cloudwatch")
    config_name = guardrails.updates[0]["EndpointConfigName"]
    points = cw.get_metric_statistics(
        Namespace="mlops",
        MetricName="ModelSignalShift",
        Dimensions=[
            {"Name": "EndpointName", "Value": "fare-shift"},
            {"Name": "EndpointConfigName", "Value": config_name},
        ],
        StartTime=datetime(2000, 1, 1, tzinfo=UTC),
        EndTime=datetime(2100, 1, 1, tzinfo=UTC),
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert points and max(p["Maximum"] for p in points) == 1.0
    state = backend.describe_endpoint("fare-shift")
    assert [v.name for v in state.variants] == ["v1"] and state.status == "InService"


def test_dry_runs_print_the_exact_requests_and_create_nothing(
    tmp_path: Path, store: dict[str, Any], aws: str, bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    settings = _settings(tmp_path, store, aws, autoscaling={"enabled": True})
    (tmp_path / "mlops.toml").write_text("")
    for key, value in {
        "MLOPS_BACKEND": "sagemaker",
        "MLOPS_TRACKING_URI": store["uri"],
        "MLOPS_WORK_DIR": str(settings.work_dir),
        "MLOPS_AWS__REGION": REGION,
        "MLOPS_AWS__ENDPOINT_URL": aws,
        "MLOPS_SAGEMAKER__ROLE_ARN": ROLE,
        "MLOPS_SAGEMAKER__BUCKET": BUCKET,
        "MLOPS_SAGEMAKER__IMAGE_URI": IMAGE,
        "MLOPS_AUTOSCALING__ENABLED": "true",
        "MLOPS_ROLLOUT__MAX_EXECUTION_S": "1200",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    created = runner.invoke(
        app,
        ["endpoint", "create", "fare-dry", "--model", _ref(store, "blue"), "--variant", "v1",
         "--dry-run", "--json"],
    )
    assert created.exit_code == 0, created.output
    plan = json.loads(created.output)
    assert [(r["service"], r["operation"]) for r in plan] == [
        ("sagemaker", "CreateModel"),
        ("sagemaker", "CreateEndpointConfig"),
        ("sagemaker", "CreateEndpoint"),
        ("application-autoscaling", "RegisterScalableTarget"),
        ("application-autoscaling", "PutScalingPolicy"),
    ]
    assert plan[1]["params"]["DataCaptureConfig"]["EnableCapture"] is True
    updated = runner.invoke(
        app,
        ["endpoint", "update", "fare-dry", "--model", f"{MODEL}/{store['versions']['shifted']}",
         "--routing", "LINEAR", "--linear-step", "25", "--bake", "60", "--dry-run", "--json"],
    )
    assert updated.exit_code == 0, updated.output
    plan = json.loads(updated.output)
    operations = [r["operation"] for r in plan]
    assert operations == [
        "CreateModel", "CreateEndpointConfig", *["PutMetricAlarm"] * 4, "UpdateEndpoint",
        "RegisterScalableTarget", "PutScalingPolicy",
    ]
    routing = plan[6]["params"]["DeploymentConfig"]["BlueGreenUpdatePolicy"][
        "TrafficRoutingConfiguration"
    ]
    assert routing == {
        "Type": "LINEAR",
        "WaitIntervalInSeconds": 60,
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
    }
    assert not [m for m in _models(aws) if m.startswith("fare-dry-")]
    sm = boto3.client("sagemaker", endpoint_url=aws, region_name=REGION)
    configs = sm.list_endpoint_configs()["EndpointConfigs"]
    assert not [c for c in configs if c["EndpointConfigName"].startswith("fare-dry-")]


def test_the_deploy_stage_creates_then_updates_a_sagemaker_endpoint(
    tmp_path: Path, store: dict[str, Any], aws: str, bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deploy stage, unchanged, over the Protocol: the first deploy creates the endpoint
    with data capture, the second is SageMaker's update with the policy and the alarms,
    recorded in MLflow as a local rollout is."""
    from mlops.stages.deploy import deploy_to_endpoint
    from mlops.tracking import Tags, connect

    settings = _settings(tmp_path, store, aws)
    guardrails = Guardrails(None, aws, store["rows"], monkeypatch=monkeypatch)
    policy = settings.rollout.policy()
    first = deploy_to_endpoint(
        settings, model_name=MODEL, version=store["versions"]["blue"], endpoint="fare-stage",
        policy=policy,
    )
    assert first.completed and first.reason == "created fare-stage serving v1"
    sm = boto3.client("sagemaker", endpoint_url=aws, region_name=REGION)
    described = sm.describe_endpoint(EndpointName="fare-stage")
    config = sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    assert config["DataCaptureConfig"]["EnableCapture"] is True
    twin = store["versions"]["twin"]
    second = deploy_to_endpoint(
        settings, model_name=MODEL, version=twin, endpoint="fare-stage", policy=policy
    )
    assert second.completed, second.reason
    assert (second.blue_variant, second.green_variant) == ("v1", f"v{twin}")
    (update,) = guardrails.updates
    deployment = update["DeploymentConfig"]
    assert deployment == policy.to_deployment_config(
        [a["AlarmName"] for a in deployment["AutoRollbackConfiguration"]["Alarms"]]
    )
    suffixes = {a["AlarmName"].split(update["EndpointConfigName"])[1] for a in guardrails.alarms[0]}
    assert suffixes == {"-5xx-rate", "-4xx-rate", "-latency-p99", "-model-signal"}
    run = connect(settings).get_run(second.record_run_id)
    assert run.data.tags[Tags.ROLLOUT_OUTCOME] == "completed"
    assert sm.describe_endpoint(EndpointName="fare-stage")["EndpointConfigName"] == (
        update["EndpointConfigName"]
    )


def test_variants_are_added_and_removed_through_new_endpoint_configs(
    fleet: tuple[SageMakerEndpointBackend, Guardrails, Settings], store: dict[str, Any]
) -> None:
    backend, guardrails, _ = fleet
    backend.create_endpoint("fare-vars", [VariantSpec("v1", _ref(store, "blue"))])
    added = backend.add_variant(
        "fare-vars", VariantSpec("v3", _ref(store, "shifted"), initial_weight=0.0)
    )
    assert (added.name, added.weight, added.model_version) == ("v3", 0.0, "3")
    (change,) = guardrails.updates
    assert "DeploymentConfig" not in change  # a plain configuration change
    backend.remove_variant("fare-vars", "v3")
    assert guardrails.updates[1]["EndpointConfigName"] != change["EndpointConfigName"]
    assert [v.name for v in backend.describe_endpoint("fare-vars").variants] == ["v1"]
    with pytest.raises(EndpointError, match="last production variant"):
        backend.remove_variant("fare-vars", "v1")
