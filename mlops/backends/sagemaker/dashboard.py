"""The CloudWatch dashboard of a model: a pure function from endpoints to ``DashboardBody``.

One row per endpoint of the model: invocations, 4xx and 5xx errors, and ``ModelLatency``
(average and p99) per variant (``AWS/SageMaker``, dimensions ``EndpointName`` and
``VariantName``); then the drift share of the monitoring runs (``mlops``/``DriftShare``) and
the synthetic probe's success rate (``mlops``/``ProbeSuccessRate``); and an alarm-status
widget over the endpoint's alarms (``mlops-<endpoint>-*``).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "DRIFT_METRIC",
    "PROBE_METRIC",
    "dashboard_body",
    "dashboard_name",
]

DRIFT_METRIC = "DriftShare"
PROBE_METRIC = "ProbeSuccessRate"
_NAMESPACE = "mlops"
_WIDTH, _HEIGHT = 8, 6


def dashboard_name(model: str) -> str:
    """The dashboard of ``model``: ``mlops-<model>``."""
    return f"mlops-{model}"


def _widget(
    x: int, y: int, title: str, metrics: list[list[Any]], region: str, **extra: Any
) -> dict[str, Any]:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": _WIDTH,
        "height": _HEIGHT,
        "properties": {
            "title": title,
            "region": region,
            "metrics": metrics,
            "period": 60,
            "view": "timeSeries",
            **extra,
        },
    }


def dashboard_body(
    model: str,
    endpoints: dict[str, list[str]],
    alarms: dict[str, list[str]],
    region: str,
) -> str:
    """The ``DashboardBody`` JSON.

    Args:
        model: the registered model.
        endpoints: endpoint -> its variants.
        alarms: endpoint -> ARNs of its alarms.
        region: where the metrics are.
    """
    widgets: list[dict[str, Any]] = []
    y = 0
    for endpoint, variants in sorted(endpoints.items()):
        def per_variant(
            metric: str, stat: str, endpoint: str = endpoint, variants: list[str] = variants
        ) -> list[list[Any]]:
            return [
                [
                    "AWS/SageMaker", metric, "EndpointName", endpoint, "VariantName", variant,
                    {"stat": stat, "label": f"{variant} {metric} {stat}"},
                ]
                for variant in variants
            ]  # fmt: skip

        widgets.append(
            _widget(0, y, f"{endpoint}: invocations", per_variant("Invocations", "Sum"), region)
        )
        widgets.append(
            _widget(
                _WIDTH,
                y,
                f"{endpoint}: 4xx and 5xx errors",
                per_variant("Invocation4XXErrors", "Sum")
                + per_variant("Invocation5XXErrors", "Sum"),
                region,
            )
        )
        widgets.append(
            _widget(
                2 * _WIDTH,
                y,
                f"{endpoint}: model latency (microseconds)",
                per_variant("ModelLatency", "Average") + per_variant("ModelLatency", "p99"),
                region,
            )
        )
        y += _HEIGHT
        widgets.append(
            _widget(
                0,
                y,
                f"{endpoint}: drift share (monitoring)",
                [[_NAMESPACE, DRIFT_METRIC, "Model", model, "Endpoint", endpoint,
                  {"stat": "Maximum"}]],
                region,
                period=3600,
                yAxis={"left": {"min": 0, "max": 1}},
            )
        )  # fmt: skip
        widgets.append(
            _widget(
                _WIDTH,
                y,
                f"{endpoint}: synthetic probe success rate",
                [[_NAMESPACE, PROBE_METRIC, "Endpoint", endpoint, {"stat": "Minimum"}]],
                region,
                period=300,
                yAxis={"left": {"min": 0, "max": 1}},
            )
        )
        if alarms.get(endpoint):
            widgets.append(
                {
                    "type": "alarm",
                    "x": 2 * _WIDTH,
                    "y": y,
                    "width": _WIDTH,
                    "height": _HEIGHT,
                    "properties": {
                        "title": f"{endpoint}: alarms",
                        "alarms": sorted(alarms[endpoint])[:100],
                    },
                }
            )
        y += _HEIGHT
    if not widgets:
        widgets.append(
            {
                "type": "text",
                "x": 0,
                "y": 0,
                "width": 24,
                "height": 2,
                "properties": {
                    "markdown": f"{model} has no SageMaker endpoint yet; deploy it and this "
                    "dashboard fills in."
                },
            }
        )
    return json.dumps({"widgets": widgets}, separators=(",", ":"))
