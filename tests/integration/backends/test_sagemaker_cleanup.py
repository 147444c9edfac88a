"""``mlops cleanup MODEL`` on SageMaker: moto holds resources made by the naming convention.

The test creates, with boto3, what the endpoint backend leaves for a model (tags
``mlops:model`` / ``mlops:endpoint``, configs ``<endpoint>-<UTC stamp>``, models
``<endpoint>-<variant>-<id>``, alarms ``mlops-<endpoint>-*``, a scalable target and policy
per variant, dashboard ``mlops-<model>``) and the same for another model; cleanup lists and
removes the first model's resources and leaves the other's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from flows.cli import app
from mlops.settings import Settings
from mlops.stages.cleanup import plan_cleanup, run_cleanup
from tests.conftest import AWS_TEST_CREDENTIALS, make_settings
from tests.sagemaker_harness import REGION, make_endpoint_resources

pytestmark = pytest.mark.moto


@pytest.fixture
def aws(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in AWS_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return s3_endpoint


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION)


def _settings(root: Path, endpoint: str) -> Settings:
    return make_settings(
        root, backend="sagemaker", aws={"region": REGION, "endpoint_url": endpoint}
    )


def test_cleanup_removes_what_the_model_created_and_nothing_else(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_endpoint_resources(aws, "churn", "churn-prod", ["blue", "green"])
    make_endpoint_resources(aws, "churn-other", "other-prod", ["blue"])
    settings = _settings(tmp_path, aws)

    plan = plan_cleanup(settings, "churn")
    listed = {(r.kind, r.name) for r in plan.resources}
    assert listed == {
        ("scaling-policy", "mlops-churn-prod-blue-invocations"),
        ("scaling-policy", "mlops-churn-prod-green-invocations"),
        ("scalable-target", "endpoint/churn-prod/variant/blue"),
        ("scalable-target", "endpoint/churn-prod/variant/green"),
        ("alarm", "mlops-churn-prod-5xx"),
        ("alarm", "mlops-churn-prod-latency"),
        ("endpoint", "churn-prod"),
        ("endpoint-config", "churn-prod-20261130090000"),
        ("model", "churn-prod-blue-a1b2c3"),
        ("model", "churn-prod-green-a1b2c3"),
        ("dashboard", "mlops-churn"),
    }

    monkeypatch.setenv("MLOPS_BACKEND", "sagemaker")
    monkeypatch.setenv("MLOPS_AWS__REGION", REGION)
    monkeypatch.setenv("MLOPS_AWS__ENDPOINT_URL", aws)
    monkeypatch.setenv("MLOPS_WORK_DIR", str(settings.work_dir))
    monkeypatch.setenv("MLOPS_TRACKING_URI", settings.effective_tracking_uri)
    done = CliRunner().invoke(app, ["cleanup", "churn", "--yes"])
    assert done.exit_code == 0, done.output
    assert "removed endpoint churn-prod" in done.output
    assert "removed 11 of 11" in done.output

    sm = _client("sagemaker", aws)
    endpoints = {e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]}
    assert "other-prod" in endpoints and "churn-prod" not in endpoints
    configs = {c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]}
    assert "other-prod-20261130090000" in configs
    assert not any(c.startswith("churn-prod") for c in configs)
    models = {m["ModelName"] for m in sm.list_models()["Models"]}
    assert "other-prod-blue-a1b2c3" in models
    assert not any(m.startswith("churn-prod") for m in models)
    alarms = _client("cloudwatch", aws).describe_alarms(AlarmNamePrefix="mlops-")
    names = {a["AlarmName"] for a in alarms["MetricAlarms"]}
    assert {"mlops-other-prod-5xx", "mlops-other-prod-latency"} <= names
    assert not any(n.startswith("mlops-churn-prod-") for n in names)
    targets = _client("application-autoscaling", aws).describe_scalable_targets(
        ServiceNamespace="sagemaker"
    )["ScalableTargets"]
    ids = {t["ResourceId"] for t in targets}
    assert "endpoint/other-prod/variant/blue" in ids
    assert not any("churn-prod" in i for i in ids)
    dashboards = {d["DashboardName"] for d in _client("cloudwatch", aws).list_dashboards()[
        "DashboardEntries"
    ]}
    assert "mlops-churn-other" in dashboards and "mlops-churn" not in dashboards

    # a second run finds nothing; what is already gone is skipped, not an error
    assert plan_cleanup(settings, "churn").resources == []
    assert run_cleanup(settings, plan) == []


def test_cleanup_without_a_region_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops.errors import ConfigError

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    settings = make_settings(tmp_path, backend="sagemaker")
    with pytest.raises(ConfigError, match="region"):
        plan_cleanup(settings, "churn")
