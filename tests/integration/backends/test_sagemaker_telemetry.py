"""CloudWatch telemetry of the SageMaker backend against moto's CloudWatch.

The dashboard of a model covers its endpoints' variants, alarms and the package's own
metrics; the probe's success rate and the monitor's drift share are published as metrics
that read back; the probe's alarm fires below ``probe_min_success``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from mlops.backends import Telemetry, get_telemetry
from mlops.settings import Settings
from tests.conftest import AWS_TEST_CREDENTIALS, make_settings
from tests.sagemaker_harness import REGION, make_endpoint_resources

pytestmark = pytest.mark.moto


@pytest.fixture
def aws(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in AWS_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return s3_endpoint


def _settings(root: Path, endpoint: str, **sagemaker: Any) -> Settings:
    return make_settings(
        root,
        backend="sagemaker",
        aws={"region": REGION, "endpoint_url": endpoint},
        sagemaker=sagemaker,
    )


def _values(cloudwatch: Any, metric: str, dimensions: dict[str, str]) -> list[float]:
    now = datetime.now(UTC)
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "mlops",
                        "MetricName": metric,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                    },
                    "Period": 60,
                    "Stat": "Minimum",
                },
            }
        ],
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=1),
    )
    return [float(v) for v in answer["MetricDataResults"][0]["Values"]]


def test_probe_and_drift_metrics_alarm_and_dashboard(aws: str, tmp_path: Path) -> None:
    make_endpoint_resources(aws, "fraud", "fraud-prod", ["blue", "green"])
    settings = _settings(tmp_path, aws, probe_min_success=0.95)
    telemetry = get_telemetry(settings)
    assert isinstance(telemetry, Telemetry)
    cloudwatch = boto3.client("cloudwatch", endpoint_url=aws, region_name=REGION)

    alarm = telemetry.publish_probe("fraud", "fraud-prod", 0.5)
    telemetry.publish_drift("fraud", "fraud-prod", 0.25)

    assert alarm == "mlops-fraud-prod-probe"
    described = cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]
    assert (described["Namespace"], described["MetricName"]) == ("mlops", "ProbeSuccessRate")
    assert described["Threshold"] == 0.95
    assert described["ComparisonOperator"] == "LessThanThreshold"
    assert described["Dimensions"] == [{"Name": "Endpoint", "Value": "fraud-prod"}]
    tags = cloudwatch.list_tags_for_resource(ResourceARN=described["AlarmArn"])["Tags"]
    assert {"Key": "mlops:model", "Value": "fraud"} in tags
    assert _values(cloudwatch, "ProbeSuccessRate", {"Endpoint": "fraud-prod"}) == [0.5]
    assert _values(cloudwatch, "DriftShare", {"Model": "fraud", "Endpoint": "fraud-prod"}) == [
        0.25
    ]
    listed = cloudwatch.list_metrics(Namespace="mlops")["Metrics"]
    assert {"ProbeSuccessRate", "DriftShare"} <= {m["MetricName"] for m in listed}

    body = json.loads(cloudwatch.get_dashboard(DashboardName="mlops-fraud")["DashboardBody"])
    metrics = [
        line[:6] for w in body["widgets"] if w["type"] == "metric"
        for line in w["properties"]["metrics"]
    ]  # fmt: skip
    for variant in ("blue", "green"):
        for name in ("Invocations", "Invocation4XXErrors", "Invocation5XXErrors", "ModelLatency"):
            assert [
                "AWS/SageMaker", name, "EndpointName", "fraud-prod", "VariantName", variant
            ] in metrics  # fmt: skip
    assert ["mlops", "DriftShare", "Model", "fraud", "Endpoint", "fraud-prod"] in metrics
    alarm_widget = next(w for w in body["widgets"] if w["type"] == "alarm")
    arns = alarm_widget["properties"]["alarms"]
    assert described["AlarmArn"] in arns
    assert any(a.endswith(":alarm:mlops-fraud-prod-5xx") for a in arns)


def test_dashboard_can_be_turned_off_and_local_has_no_telemetry(aws: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, aws, dashboard=False)
    telemetry = get_telemetry(settings)
    assert telemetry is not None
    assert telemetry.put_dashboard("quiet") is None
    telemetry.publish_drift("quiet", "quiet-prod", 0.0)
    cloudwatch = boto3.client("cloudwatch", endpoint_url=aws, region_name=REGION)
    names = [d["DashboardName"] for d in cloudwatch.list_dashboards()["DashboardEntries"]]
    assert "mlops-quiet" not in names
    assert get_telemetry(make_settings(tmp_path / "local")) is None
