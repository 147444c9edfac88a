"""CloudWatch telemetry of ``backend = "sagemaker"``: the model's dashboard, the drift share
of monitoring runs and the synthetic probe's success rate with its alarm.

Metrics go to namespace ``mlops``: ``DriftShare`` (dimensions ``Model``, ``Endpoint``) and
``ProbeSuccessRate`` (dimension ``Endpoint``). The probe's alarm ``mlops-<endpoint>-probe``
fires when the rate is below ``[sagemaker] probe_min_success``; it is tagged like every
resource of the package, so ``mlops cleanup`` finds it. Every publication also refreshes the
dashboard ``mlops-<model>`` (``PutDashboard`` replaces it whole; ``[sagemaker] dashboard =
false`` turns that off).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlops.backends._s3 import make_client
from mlops.backends.sagemaker.cleanup import SageMakerResources
from mlops.backends.sagemaker.config import require_region
from mlops.backends.sagemaker.dashboard import (
    DRIFT_METRIC,
    PROBE_METRIC,
    dashboard_body,
    dashboard_name,
)
from mlops.backends.telemetry import METRIC_NAMESPACE

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["CloudWatchTelemetry", "probe_alarm_name"]

logger = logging.getLogger(__name__)


def probe_alarm_name(endpoint: str) -> str:
    """The alarm on the synthetic probe of ``endpoint``."""
    return f"mlops-{endpoint}-probe"


class CloudWatchTelemetry:
    """The :class:`~mlops.backends.telemetry.Telemetry` of the SageMaker backend.

    Args:
        settings: effective settings (region, endpoint URL, ``[sagemaker]``).
        session: a ``boto3.Session`` the clients are made from (default: a new one).

    Raises:
        ConfigError: no region.
    """

    def __init__(self, settings: Settings, *, session: Any = None) -> None:
        self._settings = settings
        self._region = require_region(settings, "CloudWatch telemetry")
        self._session = session
        self._cloudwatch: Any = None

    @property
    def _client(self) -> Any:
        if self._cloudwatch is None:
            self._cloudwatch = make_client(
                "cloudwatch", self._settings.aws, self._region, self._session
            )
        return self._cloudwatch

    def put_dashboard(self, model: str, endpoints: list[str] | None = None) -> str | None:
        """Create or replace ``mlops-<model>``; ``None`` when dashboards are off.

        Args:
            endpoints: the model's endpoints (default: those tagged ``mlops:model``).
        """
        if not self._settings.sagemaker.dashboard:
            return None
        resources = SageMakerResources(self._settings, session=self._session)
        tagged = resources.model_endpoints(model)
        variants = {e: tagged.get(e, []) for e in endpoints} if endpoints is not None else tagged
        alarms: dict[str, list[str]] = {}
        for endpoint in variants:
            pages = self._client.get_paginator("describe_alarms").paginate(
                AlarmNamePrefix=f"mlops-{endpoint}-"
            )
            alarms[endpoint] = [
                a["AlarmArn"]
                for page in pages
                for a in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]
            ]
        name = dashboard_name(model)
        answer = self._client.put_dashboard(
            DashboardName=name,
            DashboardBody=dashboard_body(model, variants, alarms, self._region),
        )
        for problem in answer.get("DashboardValidationMessages", []):
            logger.warning("dashboard %s: %s", name, problem.get("Message"))
        return name

    def _put(self, metric: str, value: float, dimensions: dict[str, str]) -> None:
        self._client.put_metric_data(
            Namespace=METRIC_NAMESPACE,
            MetricData=[
                {
                    "MetricName": metric,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                    "Timestamp": datetime.now(UTC),
                    "Value": float(value),
                    "Unit": "None",
                }
            ],
        )

    def publish_drift(self, model: str, endpoint: str, share: float) -> None:
        """``mlops``/``DriftShare`` of ``model`` on ``endpoint``; the dashboard refreshed."""
        self._put(DRIFT_METRIC, share, {"Model": model, "Endpoint": endpoint})
        self.put_dashboard(model)

    def publish_probe(self, model: str, endpoint: str, success_rate: float) -> str:
        """``mlops``/``ProbeSuccessRate`` of ``endpoint`` and its alarm; the alarm's name."""
        self._put(PROBE_METRIC, success_rate, {"Endpoint": endpoint})
        alarm = probe_alarm_name(endpoint)
        threshold = self._settings.sagemaker.probe_min_success
        self._client.put_metric_alarm(
            AlarmName=alarm,
            AlarmDescription=(
                f"the synthetic probe of {endpoint} ({model}) succeeded on fewer than "
                f"{threshold:.0%} of its calls"
            ),
            Namespace=METRIC_NAMESPACE,
            MetricName=PROBE_METRIC,
            Dimensions=[{"Name": "Endpoint", "Value": endpoint}],
            Statistic="Minimum",
            Period=300,
            EvaluationPeriods=1,
            Threshold=threshold,
            ComparisonOperator="LessThanThreshold",
            TreatMissingData="missing",
            Tags=[
                {"Key": "mlops:model", "Value": model},
                {"Key": "mlops:endpoint", "Value": endpoint},
            ],
        )
        self.put_dashboard(model)
        return alarm
