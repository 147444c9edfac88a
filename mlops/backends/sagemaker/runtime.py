"""An endpoint's traffic on SageMaker: invocations (sagemaker-runtime) and each variant's
metrics over a window (CloudWatch's ``AWS/SageMaker`` namespace)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from mlops.backends.endpoint import InvokeResult, VariantMetrics

__all__ = ["invoke_endpoint", "read_variant_metrics"]

_METRICS = {
    "requests": ("Invocations", "Sum"),
    "status_4xx": ("Invocation4XXErrors", "Sum"),
    "status_5xx": ("Invocation5XXErrors", "Sum"),
    "latency_p50_ms": ("ModelLatency", "p50"),
    "latency_p99_ms": ("ModelLatency", "p99"),
}


def invoke_endpoint(
    runtime: Any,
    endpoint: str,
    body: bytes | str,
    *,
    content_type: str,
    accept: str | None,
    target_variant: str | None,
    inference_id: str | None,
) -> InvokeResult:
    """``InvokeEndpoint``; an error status (the model's own for a ``ModelError``) is
    returned as the result, not raised."""
    from botocore.exceptions import ClientError

    params: dict[str, Any] = {
        "EndpointName": endpoint,
        "Body": body.encode() if isinstance(body, str) else body,
        "ContentType": content_type,
    }
    if accept:
        params["Accept"] = accept
    if target_variant:
        params["TargetVariant"] = target_variant
    if inference_id:
        params["InferenceId"] = inference_id
    started = time.perf_counter()
    try:
        answer = runtime.invoke_endpoint(**params)
    except ClientError as exc:
        response: dict[str, Any] = dict(exc.response)
        status = int(
            response.get("OriginalStatusCode")
            or response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            or 500
        )
        message = response.get("OriginalMessage") or response.get("Error", {}).get(
            "Message", str(exc)
        )
        return InvokeResult(
            status,
            str(message).encode(),
            "text/plain",
            target_variant,
            (time.perf_counter() - started) * 1000,
        )
    return InvokeResult(
        200,
        answer["Body"].read(),
        answer.get("ContentType", accept or content_type),
        answer.get("InvokedProductionVariant"),
        (time.perf_counter() - started) * 1000,
    )


def read_variant_metrics(
    cloudwatch: Any, endpoint: str, variants: list[str], since: float, until: float | None
) -> dict[str, VariantMetrics]:
    """Each variant's invocations, 4xx, 5xx and ``ModelLatency`` p50/p99 (in ms) over
    ``[since, until)`` from ``GetMetricData`` (one-minute periods)."""
    queries, keys = [], {}
    for i, variant in enumerate(variants):
        for j, (field, (metric, stat)) in enumerate(_METRICS.items()):
            qid = f"m{i}_{j}"
            keys[qid] = (variant, field)
            queries.append(
                {
                    "Id": qid,
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/SageMaker",
                            "MetricName": metric,
                            "Dimensions": [
                                {"Name": "EndpointName", "Value": endpoint},
                                {"Name": "VariantName", "Value": variant},
                            ],
                        },
                        "Period": 60,
                        "Stat": stat,
                    },
                    "ReturnData": True,
                }
            )
    values: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    if queries:
        pages = cloudwatch.get_paginator("get_metric_data").paginate(
            MetricDataQueries=queries,
            StartTime=datetime.fromtimestamp(since, UTC),
            EndTime=datetime.fromtimestamp(until or time.time(), UTC),
        )
        for page in pages:
            for result in page.get("MetricDataResults", []):
                variant, field = keys[result["Id"]]
                values[variant].setdefault(field, []).extend(result.get("Values", []))
    return {v: _variant_metrics(values[v]) for v in variants}


def _variant_metrics(values: dict[str, list[float]]) -> VariantMetrics:
    requests = int(sum(values.get("requests", [])))
    e4 = int(sum(values.get("status_4xx", [])))
    e5 = int(sum(values.get("status_5xx", [])))
    p50 = values.get("latency_p50_ms")
    p99 = values.get("latency_p99_ms")
    return VariantMetrics(
        requests=requests,
        status_2xx=max(requests - e4 - e5, 0),
        status_4xx=e4,
        status_5xx=e5,
        latency_p50_ms=max(p50) / 1000.0 if p50 else None,  # CloudWatch has microseconds
        latency_p99_ms=max(p99) / 1000.0 if p99 else None,
    )
