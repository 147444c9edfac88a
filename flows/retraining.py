"""The ``retraining`` flow: drift or new data → train a challenger → deployment pipeline.

prefect.yaml triggers its deployment on ``mlops.drift.detected`` and ``mlops.data.updated``
(one run per model per ``within`` window); the cooldown recorded on the registered model
(``retraining.cooldown``) is what makes one incident retrain once, across restarts too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import ModelLink, RunRef, artifact_key, publish
from flows.deployment import deployment_pipeline
from flows.hooks import flow_settings, forward_mlops_logs, notify_failure
from flows.run_names import retraining_run_name
from flows.summaries import retraining_summary
from flows.training import training_pipeline
from mlops.settings import Settings
from mlops.stages import retrain
from mlops.stages.retrain import RetrainingResult, TrainingSource

__all__ = ["retraining"]

_TASK_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


@task(name="cooldown", task_run_name="cooldown {model_name}", **_TASK_OPTIONS)
def cooldown_task(settings: Settings, model_name: str, reason: str) -> tuple[bool, str]:
    """Check the cooldown and, when retraining may go ahead, record that it starts now."""
    now = datetime.now(UTC)
    allowed, why = retrain.cooldown_check(settings, model_name, now)
    if allowed:
        retrain.mark_retraining_started(settings, model_name, reason, now)
    return allowed, why


@task(
    name="training-data",
    task_run_name="training-data {model_name}",
    retries=2,
    retry_delay_seconds=5,
    **_TASK_OPTIONS,
)
def training_data_task(settings: Settings, model_name: str) -> TrainingSource:
    """The configured training source plus the labelled capture, as a table to train on."""
    return retrain.retraining_data(settings, model_name)


@flow(
    name="retraining",
    flow_run_name=retraining_run_name,
    on_failure=[notify_failure],
    on_crashed=[notify_failure],
    log_prints=True,
)
def retraining(
    model_name: str = "taxi",
    reason: str = "drift",
    event_id: str | None = None,
    payload: dict[str, Any] | None = None,
    deploy: bool = True,
    settings: Settings | None = None,
) -> RetrainingResult:
    """Retrain a model after drift or new data, then ship the new challenger for approval.

    Inside ``retraining.cooldown`` after the last retraining it does nothing ("skipped:
    cooldown until ..."). Otherwise it records the start on the registered model, runs the
    ``training-pipeline`` flow on the configured source plus labelled capture, and, when a
    new version was registered, the ``deployment-pipeline`` flow, which pauses for approval
    and notifies the approvers.

    Args:
        model_name: registered model, or its event resource id ``mlops.model.<name>``.
        reason: why (``drift``, ``data``, ...); recorded on the registered model.
        event_id: id of the Prefect event that triggered the run.
        payload: the event's payload (drifted features, window, digests...).
        deploy: run the deployment pipeline after training (prefect.yaml sets it).
        settings: effective settings; loaded from mlops.toml and MLOPS_* when left out.
    """
    settings = flow_settings(settings)
    model_name = retrain.model_name_of(model_name)
    logger = get_run_logger()
    details = ", ".join(f"{k}={v}" for k, v in (payload or {}).items())
    logger.info(
        "retraining %s: %s%s%s",
        model_name,
        reason,
        f" (event {event_id})" if event_id else "",
        f"; {details}" if details else "",
    )
    recorded = f"{reason} (event {event_id})" if event_id else reason
    with forward_mlops_logs():
        allowed, why = cooldown_task(settings, model_name, recorded)
        if not allowed:
            logger.info("skipped: %s", why)
            skipped = RetrainingResult(
                model_name=model_name,
                reason=reason,
                event_id=event_id,
                skipped=True,
                message=f"skipped: {why}",
            )
            _publish(settings, skipped, payload, None)
            return skipped
        logger.info("retraining goes ahead: %s", why)
        source = training_data_task(settings, model_name)
    trained = training_pipeline(
        model_name=model_name, settings=settings, **source.pipeline_arguments()
    )
    registered = trained.registered
    result = RetrainingResult(
        model_name=model_name,
        reason=reason,
        event_id=event_id,
        message="",
        source=source,
        version=registered.version,
        created=registered.created,
    )
    if not registered.created:
        result.message = (
            f"training on {source.source} gave the inputs of v{registered.version} again "
            "(same data and parameters): nothing new to deploy"
        )
        logger.info("%s", result.message)
        _publish(settings, result, payload, trained.run_id)
        return result
    result.message = f"registered {model_name} v{registered.version} as challenger"
    if deploy:
        rollout = deployment_pipeline(
            model_name=model_name, version=registered.version, settings=settings
        )
        result.deployed = rollout is not None
        result.message += "; " + (
            f"approved and rolled out to {rollout.endpoint}" if rollout else "rejected"
        )
    logger.info("%s", result.message)
    _publish(settings, result, payload, trained.run_id)
    return result


def _publish(
    settings: Settings,
    result: RetrainingResult,
    payload: dict[str, Any] | None,
    training_run_id: str | None,
) -> None:
    """The run's summary, with links to the training run and the version it registered.

    The training-pipeline and deployment-pipeline runs it started publish their own.
    """
    publish(
        settings,
        artifact_key(result.model_name, "retraining"),
        retraining_summary(result, payload),
        runs=[RunRef("training run", training_run_id, ("plots",))],
        models=[ModelLink(result.model_name, result.version)] if result.version else [],
    )
