"""Synthetic canary: call the prod endpoint with known rows, log the success rate, alarm < 90%."""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

from pydantic import BaseModel

from mlops.backends import get_telemetry
from mlops.errors import EndpointError, MlopsError
from mlops.notify import Notifier, get_notifier
from mlops.stages.deploy import endpoint_name, reference_rows
from mlops.tracking import Tags, connect, log_summary_run, monitoring_experiment

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["ProbeResult", "probe_endpoint"]

logger = logging.getLogger(__name__)


class ProbeResult(BaseModel):
    """What one probe saw."""

    model_name: str
    endpoint: str
    requests: int
    successes: int
    success_rate: float
    latency_p50_ms: float | None
    latency_max_ms: float | None
    threshold: float
    alarm: bool
    errors: list[str]
    run_id: str


def probe_endpoint(
    settings: Settings,
    model_name: str,
    *,
    endpoint: str | None = None,
    requests: int = 10,
    interval_s: float = 1.0,
    threshold: float = 0.9,
    timeout_s: float = 5.0,
    notifier: Notifier | None = None,
) -> ProbeResult:
    """Send ``requests`` single-row calls to the endpoint and judge its success rate.

    A call succeeds when it answers 200 with one finite prediction within ``timeout_s``.
    The rows come from the reference sample of the version the endpoint serves. A run
    of ``<model>/monitoring`` (``mlops.stage=probe``) records the rate and latencies;
    below ``threshold`` ``notifier`` (default: the configured one, ``get_notifier``) is
    told and ``alarm`` is set.
    """
    from mlops.backends import get_endpoint_backend

    endpoint = endpoint or endpoint_name(settings, model_name, "prod")
    errors: list[str] = []
    latencies: list[float] = []
    successes = 0
    rows: list[bytes] = []
    backend = get_endpoint_backend(settings)
    try:
        serving = backend.describe_endpoint(endpoint).serving
        if not serving or not serving[0].model_version:
            raise EndpointError(f"endpoint {endpoint} serves no registered version")
        body, _ = reference_rows(settings, model_name, str(serving[0].model_version), requests)
        rows = [line + b"\n" for line in body.splitlines() if line.strip()]
        reachable = True
    except MlopsError as exc:
        errors.append(str(exc))
        reachable = False
    for index in range(requests):
        if not reachable:
            break
        row = rows[index % len(rows)]
        try:
            result = backend.invoke(
                endpoint, row, content_type="text/csv", accept="text/csv", timeout=timeout_s
            )
        except MlopsError as exc:
            errors.append(f"request {index}: {exc}")
            continue
        latencies.append(result.latency_ms)
        text = result.body.decode("utf-8", "replace").strip()
        if result.status != 200:
            errors.append(f"request {index}: HTTP {result.status} {text[:200]}")
        else:
            values = result.predictions()
            if len(values) == 1 and math.isfinite(values[0]):
                successes += 1
            else:
                errors.append(f"request {index}: answer {text[:100]!r} is not one number")
        if index < requests - 1:
            time.sleep(interval_s)
    backend.close()
    rate = successes / requests if requests else 0.0
    latencies.sort()
    result = ProbeResult(
        model_name=model_name,
        endpoint=endpoint,
        requests=requests,
        successes=successes,
        success_rate=rate,
        latency_p50_ms=latencies[len(latencies) // 2] if latencies else None,
        latency_max_ms=latencies[-1] if latencies else None,
        threshold=threshold,
        alarm=rate < threshold,
        errors=errors[:20],
        run_id="",
    )
    client = connect(settings)
    metrics = {"probe_success_rate": rate, "probe_requests": float(requests)}
    if result.latency_p50_ms is not None:
        metrics["probe_latency_p50_ms"] = result.latency_p50_ms
        metrics["probe_latency_max_ms"] = result.latency_max_ms or 0.0
    result.run_id = log_summary_run(
        client,
        settings,
        experiment=monitoring_experiment(model_name),
        run_name=f"probe {endpoint}",
        tags={
            Tags.STAGE: "probe",
            Tags.MODEL_NAME: model_name,
            "mlops.endpoint": endpoint,
            "mlops.probe.alarm": str(result.alarm).lower(),
        },
        metrics=metrics,
        params={"threshold": str(threshold), "endpoint": endpoint},
    )
    if errors:
        client.log_text(result.run_id, "\n".join(errors), "probe/errors.txt")
    if result.alarm:
        subject = f"mlops synthetic canary: {endpoint} success rate {rate:.0%}"
        body = (
            f"{successes}/{requests} probe calls to endpoint {endpoint} ({model_name}) succeeded, "
            f"below {threshold:.0%}. First errors: {'; '.join(errors[:3]) or 'none'}"
        )
        logger.warning("%s: %s", subject, body)
        (notifier or get_notifier(settings)).notify(subject, body)
    else:
        logger.info("probe %s: %d/%d succeeded", endpoint, successes, requests)
    telemetry = get_telemetry(settings)
    if telemetry is not None:  # CloudWatch's mlops/ProbeSuccessRate and its alarm (SageMaker)
        telemetry.publish_probe(model_name, endpoint, rate)
    return result
