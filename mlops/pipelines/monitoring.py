"""The monitoring pipeline, declared once: one step that compares an endpoint's captured
traffic of a window with each served version's training baseline. Each monitored version
gets its own MLflow run in ``<model>/monitoring``, so the pipeline keeps no run of its own.
With ``monitoring.processing_job`` the step runs as a processing job of the backend
(:mod:`mlops.pipelines.jobs`), unchanged."""

from __future__ import annotations

from mlops.pipelines.spec import Param, Pipeline, Step, StepContext
from mlops.stages.monitor import MonitorResult, monitor

__all__ = ["MONITORING"]


def _monitor(context: StepContext) -> MonitorResult:
    if context.settings.monitoring.processing_job:  # the same step, in a job of the backend
        from mlops.pipelines.jobs import in_job

        return in_job(MONITORING, "monitor", context)  # type: ignore[return-value]
    return monitor(
        context.settings,
        context.model_name,
        endpoint=context.param("endpoint"),
        since=context.param("since"),
        start=context.param("start"),
        end=context.param("end"),
        capture=context.param("capture"),
    )


MONITORING = Pipeline(
    name="monitoring",
    flow_name="monitoring",
    description=(
        "Drift, constraint violations, health, accuracy and challenger replay of an "
        "endpoint's captured traffic over a window, against each served version's baseline."
    ),
    params=(
        Param("endpoint", "str", None, "endpoint (default: the model's prod endpoint)"),
        Param("since", "str", None, "duration back from the end, e.g. 1h"),
        Param("start", "str", None, "ISO-8601 window start, instead of since"),
        Param("end", "str", None, "ISO-8601 window end (default now)"),
        Param("capture", "str", None, "capture folder or s3:// URI, when not the endpoint's"),
    ),
    steps=(
        Step("monitor", _monitor, (), MonitorResult, "transient",
             ("endpoint", "since", "start", "end", "capture"),
             "drift, constraints, health, accuracy and challenger replay for the window"),
    ),
)  # fmt: skip
