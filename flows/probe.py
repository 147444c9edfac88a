"""The ``synthetic-canary`` flow: probe the prod endpoint on a schedule (prefect.yaml)."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.artifacts import RunRef, artifact_key, publish
from flows.hooks import flow_settings, forward_mlops_logs, notify_failure
from flows.notify import get_flow_notifier
from flows.run_names import probe_run_name
from flows.summaries import probe_summary
from mlops.settings import Settings
from mlops.stages.probe import ProbeResult, probe_endpoint

__all__ = ["synthetic_canary"]


@flow(
    name="synthetic-canary",
    flow_run_name=probe_run_name,
    on_failure=[notify_failure],
    on_crashed=[notify_failure],
)
def synthetic_canary(
    model_name: str = "taxi",
    endpoint: str | None = None,
    requests: int = 10,
    interval_s: float = 1.0,
    threshold: float = 0.9,
    settings: Settings | None = None,
) -> ProbeResult:
    """Call the prod endpoint with reference rows and log the success rate.

    Below ``threshold`` the configured notifier is told (the run still completes: the
    probe worked, the endpoint did not).
    """
    settings = flow_settings(settings)
    with forward_mlops_logs():
        result = probe_endpoint(
            settings,
            model_name,
            endpoint=endpoint,
            requests=requests,
            interval_s=interval_s,
            threshold=threshold,
            notifier=get_flow_notifier(settings),
        )
    get_run_logger().info(
        "%s: %d/%d probe calls succeeded (%.0f%%, alarm below %.0f%%)",
        result.endpoint,
        result.successes,
        result.requests,
        100 * result.success_rate,
        100 * threshold,
    )
    publish(
        settings,
        artifact_key(model_name, "probe"),
        probe_summary(result),
        runs=[RunRef("probe run", result.run_id)],
    )
    return result
