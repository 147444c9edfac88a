"""The ``monitoring`` flow: captured traffic vs the training baseline, hourly (prefect.yaml).

Drift or an accuracy drop emits ``mlops.drift.detected`` (resource ``mlops.model.<name>``),
which the ``retraining`` deployment is triggered by, and tells the configured channel.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import RunRef, artifact_key, publish
from flows.events import emit_model_event
from flows.hooks import flow_settings, forward_mlops_logs, notify_failure
from flows.notify import send_notification
from flows.run_names import monitoring_run_name
from flows.summaries import monitoring_summary
from mlops.settings import Settings
from mlops.stages.monitor import MonitorResult, monitor
from mlops.tracking import Events

__all__ = ["monitoring"]

_TASK_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


@task(name="monitor", task_run_name="monitor {model_name}", **_TASK_OPTIONS)
def monitor_task(
    settings: Settings,
    model_name: str,
    endpoint: str | None,
    since: str | None,
    start: str | None,
    end: str | None,
    capture: str | None,
) -> MonitorResult:
    """Drift, constraints, health, accuracy and challenger replay for the window."""
    return monitor(
        settings,
        model_name,
        endpoint=endpoint,
        since=since,
        start=start,
        end=end,
        capture=capture,
    )


@flow(
    name="monitoring",
    flow_run_name=monitoring_run_name,
    on_failure=[notify_failure],
    on_crashed=[notify_failure],
)
def monitoring(
    model_name: str = "taxi",
    endpoint: str | None = None,
    since: str | None = None,
    start: str | None = None,
    end: str | None = None,
    capture: str | None = None,
    settings: Settings | None = None,
) -> MonitorResult:
    """Monitor the endpoint's last window (``monitoring.window``, or ``since``/``start``..``end``).

    Args:
        model_name: registered model.
        endpoint: endpoint (default: the model's prod endpoint).
        since: duration back from now, e.g. ``"1h"``.
        start: ISO-8601 window start, instead of ``since``.
        end: ISO-8601 window end (default now).
        capture: capture destination when it is not the endpoint's own.
        settings: effective settings (default: loaded from the environment).
    """
    settings = flow_settings(settings)
    logger = get_run_logger()
    with forward_mlops_logs():
        result = monitor_task(settings, model_name, endpoint, since, start, end, capture)
    for line in result.summary().splitlines():
        logger.info("%s", line)
    emitted = None
    if result.drift_detected:
        emitted = Events.DRIFT_DETECTED
        payload = result.event_payload()
        emit_model_event(Events.DRIFT_DETECTED, model_name, payload)
        logger.warning(
            "emitted %s for %s: %s", Events.DRIFT_DETECTED, model_name, payload["summary"]
        )
        send_notification(
            settings,
            f"mlops: drift detected for {model_name} on {result.endpoint}",
            f"{payload['summary']}. Window {result.start} .. {result.end}. Monitoring runs: "
            f"{', '.join(payload['report_run_ids'])} (experiment {model_name}/monitoring). "
            "The retraining deployment is triggered by this event.",
        )
    publish(
        settings,
        artifact_key(model_name, "monitoring"),
        monitoring_summary(result, emitted),
        runs=[RunRef(f"v{v.version}", v.run_id or None, ("evidently",)) for v in result.versions],
    )
    return result
