"""The ``data-watch`` flow: notice new training data and emit ``mlops.data.updated``.

Scheduled in prefect.yaml; the ``retraining`` deployment is triggered by the event.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.artifacts import ModelLink, artifact_key, publish
from flows.events import emit_model_event
from flows.hooks import flow_settings, forward_mlops_logs, notify_failure
from flows.run_names import data_watch_run_name
from flows.summaries import data_watch_summary
from mlops.settings import Settings
from mlops.stages import retrain
from mlops.stages.retrain import DataWatchResult
from mlops.tracking import Events

__all__ = ["data_watch"]


@flow(
    name="data-watch",
    flow_run_name=data_watch_run_name,
    on_failure=[notify_failure],
    on_crashed=[notify_failure],
)
def data_watch(model_name: str = "taxi", settings: Settings | None = None) -> DataWatchResult:
    """Compare the digest of the model's training source with the one seen last time.

    When it changed, emit ``mlops.data.updated`` (payload: source, old and new digest) and
    record the new digest on the registered model. The first look only records the digest.

    Args:
        model_name: registered model whose training source (``settings.retraining``) to watch.
        settings: effective settings; loaded from mlops.toml and MLOPS_* when left out.
    """
    settings = flow_settings(settings)
    logger = get_run_logger()
    with forward_mlops_logs():
        result = retrain.check_data_source(settings, model_name)
        emitted = None
        if result.changed:
            emitted = Events.DATA_UPDATED
            # The event goes first: should recording fail, the next run emits it again
            # (the retraining cooldown absorbs a repeat); the reverse could lose it.
            emit_model_event(Events.DATA_UPDATED, model_name, result.event_payload())
            logger.info(
                "%s changed (digest %s → %s): emitted %s",
                result.source,
                (result.old_digest or "")[:12],
                result.new_digest[:12],
                Events.DATA_UPDATED,
            )
        elif result.first_look:
            logger.info(
                "first look at %s: digest %s recorded", result.source, result.new_digest[:12]
            )
        else:
            logger.info("%s unchanged (digest %s)", result.source, result.new_digest[:12])
        if result.old_digest != result.new_digest:
            retrain.record_data_digest(settings, model_name, result.new_digest)
    publish(
        settings,
        artifact_key(model_name, "data-watch"),
        data_watch_summary(result, emitted),
        models=[ModelLink(model_name)],
    )
    return result
