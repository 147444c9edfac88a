"""SageMaker's auto-rollback alarms of a blue/green update, and the model-signal metric.

The update's ``AutoRollbackConfiguration`` lists four CloudWatch alarms on the new fleet:
the 5xx and 4xx rates (metric math over ``Invocation5XXErrors``/``Invocation4XXErrors`` and
``Invocations``) and the p99 of ``ModelLatency``, each dimensioned by ``EndpointName``,
``VariantName`` and the new fleet's ``EndpointConfigName`` (blue's own errors never roll
green back), and the model-signal gate: a custom metric ``ModelSignalShift`` in the
``mlops`` namespace (dimensions ``EndpointName`` and ``EndpointConfigName``) that the package
publishes while SageMaker bakes. Its value comes from :class:`CapturePairs`: green's
captured requests are scored again with blue's registered model and the pairs judged by
the rollout's gate (the same statistic as on a local endpoint); the value published is the
share of differing pairs when the gate would fire, else that share capped at the
threshold, so the alarm breaches exactly when the local gate would roll back.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlops.backends.endpoint import PlannedRequest, SignalReading
from mlops.backends.sagemaker.naming import (
    ALARM_PREFIX,
    METRIC_NAMESPACE,
    SIGNAL_METRIC,
    resource_tags,
)

if TYPE_CHECKING:
    from mlops.policy import AlarmThresholds
    from mlops.serving.model import ServingModel
    from mlops.settings import Settings

__all__ = [
    "ALARM_KINDS",
    "CapturePairs",
    "alarm_kind",
    "rollback_alarm_requests",
    "signal_metric_request",
    "signal_value",
]

logger = logging.getLogger(__name__)

_PERIOD_S = 60
ALARM_KINDS: dict[str, str] = {
    "5xx-rate": "5xx_rate",
    "4xx-rate": "4xx_rate",
    "latency-p99": "latency_p99",
    "model-signal": "model_signal",
}
"""Alarm-name suffix → the alarm's name in a rollout record (as the local gate names it)."""


def _alarm_name(config_name: str, suffix: str) -> str:
    return f"{ALARM_PREFIX}{config_name}-{suffix}"


def alarm_kind(alarm_name: str) -> str:
    """The record's name of one of our alarms (``model_signal``...), else the name itself."""
    for suffix, kind in ALARM_KINDS.items():
        if alarm_name.endswith(f"-{suffix}"):
            return kind
    return alarm_name


def _fleet_dimensions(endpoint: str, variant: str, config_name: str) -> list[dict[str, str]]:
    """The new fleet's metrics: SageMaker's endpoint metrics of the variant, narrowed to the
    endpoint config being deployed, so blue's own errors or latency never roll green back."""
    return [
        {"Name": "EndpointName", "Value": endpoint},
        {"Name": "VariantName", "Value": variant},
        {"Name": "EndpointConfigName", "Value": config_name},
    ]


def _variant_metric(
    endpoint: str, variant: str, config_name: str, name: str, stat: str
) -> dict[str, Any]:
    return {
        "Metric": {
            "Namespace": "AWS/SageMaker",
            "MetricName": name,
            "Dimensions": _fleet_dimensions(endpoint, variant, config_name),
        },
        "Period": _PERIOD_S,
        "Stat": stat,
    }


def _rate_alarm(
    endpoint: str, config_name: str, variant: str, metric: str, suffix: str, threshold: float,
    tags: list[dict[str, str]],
) -> PlannedRequest:
    return PlannedRequest(
        "cloudwatch",
        "PutMetricAlarm",
        {
            "AlarmName": _alarm_name(config_name, suffix),
            "AlarmDescription": f"{metric} / Invocations of {variant} on {endpoint} "
            f"(config {config_name}) above {threshold:g}: rolls the update back",
            "ActionsEnabled": False,
            "Metrics": [
                {
                    "Id": "errors",
                    "MetricStat": _variant_metric(endpoint, variant, config_name, metric, "Sum"),
                    "ReturnData": False,
                },
                {
                    "Id": "invocations",
                    "MetricStat": _variant_metric(
                        endpoint, variant, config_name, "Invocations", "Sum"
                    ),
                    "ReturnData": False,
                },
                {
                    "Id": "rate",
                    "Expression": "errors / invocations",
                    "Label": f"{metric} rate",
                    "ReturnData": True,
                },
            ],
            "EvaluationPeriods": 1,
            "Threshold": float(threshold),
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "Tags": tags,
        },
    )


def rollback_alarm_requests(
    endpoint: str,
    config_name: str,
    variant: str,
    thresholds: AlarmThresholds,
    model_name: str,
    *,
    signal_gate: bool = True,
) -> list[PlannedRequest]:
    """``PutMetricAlarm`` of each alarm that rolls the update to ``config_name`` back."""
    tags = resource_tags(model_name, endpoint)
    alarms = [
        _rate_alarm(
            endpoint, config_name, variant, "Invocation5XXErrors", "5xx-rate",
            thresholds.max_5xx_rate, tags,
        ),
        _rate_alarm(
            endpoint, config_name, variant, "Invocation4XXErrors", "4xx-rate",
            thresholds.max_4xx_rate, tags,
        ),
        PlannedRequest(
            "cloudwatch",
            "PutMetricAlarm",
            {
                "AlarmName": _alarm_name(config_name, "latency-p99"),
                "AlarmDescription": f"ModelLatency p99 of {variant} on {endpoint} above "
                f"{thresholds.max_latency_p99_ms:g} ms: rolls the update back",
                "ActionsEnabled": False,
                "Namespace": "AWS/SageMaker",
                "MetricName": "ModelLatency",
                "Dimensions": _fleet_dimensions(endpoint, variant, config_name),
                "ExtendedStatistic": "p99",
                "Period": _PERIOD_S,
                "EvaluationPeriods": 1,
                "Threshold": thresholds.max_latency_p99_ms * 1000.0,  # microseconds
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
                "Unit": "Microseconds",
                "Tags": tags,
            },
        ),
    ]
    if signal_gate:
        alarms.append(
            PlannedRequest(
                "cloudwatch",
                "PutMetricAlarm",
                {
                    "AlarmName": _alarm_name(config_name, "model-signal"),
                    "AlarmDescription": f"share of green's predictions differing from blue's "
                    f"on the same requests above {thresholds.max_signal_shift:g} "
                    f"(published by mlops): rolls the update to {config_name} back",
                    "ActionsEnabled": False,
                    "Namespace": METRIC_NAMESPACE,
                    "MetricName": SIGNAL_METRIC,
                    "Dimensions": _signal_dimensions(endpoint, config_name),
                    "Statistic": "Maximum",
                    "Period": _PERIOD_S,
                    "EvaluationPeriods": 1,
                    "Threshold": float(thresholds.max_signal_shift),
                    "ComparisonOperator": "GreaterThanThreshold",
                    "TreatMissingData": "notBreaching",
                    "Tags": tags,
                },
            )
        )
    return alarms


def _signal_dimensions(endpoint: str, config_name: str) -> list[dict[str, str]]:
    return [
        {"Name": "EndpointName", "Value": endpoint},
        {"Name": "EndpointConfigName", "Value": config_name},
    ]


def signal_value(reading: SignalReading, max_shift: float) -> float:
    """The metric's value: the share when the gate fires, else the share capped at the
    threshold (the alarm is ``GreaterThanThreshold``), 0 before there is a share."""
    if reading.share is None:
        return 0.0
    return reading.share if reading.fired else min(reading.share, max_shift)


def signal_metric_request(
    endpoint: str, config_name: str, reading: SignalReading, max_shift: float
) -> PlannedRequest:
    """``PutMetricData`` of one reading: the gated share and the number of pairs."""
    dims = _signal_dimensions(endpoint, config_name)
    return PlannedRequest(
        "cloudwatch",
        "PutMetricData",
        {
            "Namespace": METRIC_NAMESPACE,
            "MetricData": [
                {
                    "MetricName": SIGNAL_METRIC,
                    "Dimensions": dims,
                    "Value": signal_value(reading, max_shift),
                    "Unit": "None",
                },
                {
                    "MetricName": "ModelSignalPairs",
                    "Dimensions": dims,
                    "Value": float(reading.pairs),
                    "Unit": "Count",
                },
            ],
        },
    )


class CapturePairs:
    """Green's captured requests with green's answer and blue's answer to the same rows.

    Args:
        settings: AWS access (region, endpoint) for reading the capture.
        destination: the endpoint's capture destination (``s3://...``).
        endpoint: the endpoint.
        green: green's variant name (its capture folder).
        blue: blue's model, loaded (scores the captured rows).
        since: only records captured from this time (UTC).
    """

    def __init__(
        self,
        settings: Settings,
        destination: str,
        endpoint: str,
        green: str,
        blue: ServingModel,
        since: datetime,
    ) -> None:
        self.settings = settings
        self.destination = destination
        self.endpoint = endpoint
        self.green = green
        self.blue = blue
        self.since = since

    @classmethod
    def for_model(
        cls,
        settings: Settings,
        destination: str,
        endpoint: str,
        green: str,
        blue_ref: str,
        since: datetime,
    ) -> CapturePairs:
        """Load blue's registered model (``models:/NAME/VERSION``) from MLflow first."""
        from mlops.serving.model import ServingModel, resolve_model

        resolved = resolve_model(settings, blue_ref)
        model = ServingModel.load(resolved.path, name=resolved.name, version=resolved.version)
        return cls(settings, destination, endpoint, green, model, since)

    def read(self) -> list[tuple[Any, Any]]:
        """The (green, blue) pairs of every captured row so far."""
        from mlops.capture import read_capture_frame

        frame, stats = read_capture_frame(
            self.destination,
            self.endpoint,
            self.green,
            list(self.blue.feature_names),
            since=self.since,
            aws_region=self.settings.effective_aws_region,
            aws_endpoint_url=self.settings.aws.endpoint_url,
        )
        if stats.skipped:
            logger.info(
                "model-signal gate: %d capture records left out (%s)",
                stats.skipped,
                stats.as_dict(),
            )
        if frame.empty:
            return []
        rows = frame[list(self.blue.feature_names)].astype("float64").to_numpy().tolist()
        blue = self.blue.predict(rows)
        return list(zip(frame["prediction"].tolist(), blue, strict=True))
