"""The ``monitoring`` flow: captured traffic vs the training baseline, hourly (prefect.yaml).

Drift or an accuracy drop emits ``mlops.drift.detected`` (resource ``mlops.model.<name>``),
which the ``retraining`` deployment is triggered by, and tells the configured channel.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.artifacts import RunRef, artifact_key, publish
from flows.events import emit_model_event
from flows.hooks import flow_settings, forward_mlops_logs, notify_failure
from flows.notify import send_notification
from flows.run_names import monitoring_run_name
from flows.steps import step_tasks
from flows.summaries import monitoring_summary
from mlops.pipelines import MONITORING, StepContext
from mlops.settings import Settings
from mlops.stages.monitor import MonitorResult
from mlops.tracking import Events

__all__ = ["monitoring"]

#: The monitoring pipeline's one step as a task (mlops.pipelines.MONITORING).
STEP_TASKS, _as_task = step_tasks(MONITORING)


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
    params = {"endpoint": endpoint, "since": since, "start": start, "end": end, "capture": capture}
    with forward_mlops_logs():
        context = StepContext(settings, model_name, "", MONITORING.check_params(params))
        result = MONITORING.run_steps(context, call=_as_task)["monitor"]
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
