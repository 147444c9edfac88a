"""The ``batch-inference`` flow: check a table against the baseline, then predict it (daily cron).

A batch that drifted from the training data fails the flow (so the failure notification
fires) after emitting ``mlops.drift.detected``, which the ``retraining`` deployment is
triggered by. A batch with too many outliers fails the flow too, without the event.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows.artifacts import RunRef, artifact_key, publish
from flows.events import emit_model_event
from flows.hooks import flow_settings, forward_mlops_logs, notify_failure
from flows.run_names import batch_run_name
from flows.summaries import batch_failure_summary, batch_summary
from mlops.errors import BatchCheckError
from mlops.serving.model import parse_model_ref
from mlops.settings import Settings
from mlops.stages.batch import BatchResult, run_batch
from mlops.tracking import ALIAS_CHAMPION, Events, Tags

__all__ = ["batch_inference", "model_reference"]


def model_reference(model_name: str, alias: str = ALIAS_CHAMPION) -> str:
    """``NAME@alias``, unless ``model_name`` already names a version or alias itself
    (``NAME@other``, ``NAME/3``, ``models:/NAME/3``)."""
    if "@" in model_name or "/" in model_name:
        return model_name
    return f"{model_name}@{alias}"


@task(
    name="batch-predict",
    task_run_name="batch-predict {model}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def batch_task(
    settings: Settings, model: str, input_uri: str, output_uri: str, tags: dict[str, str]
) -> BatchResult:
    """Check the input against the baseline, then predict it chunk by chunk.

    Not retried: a failed check fails again, and a rerun of the flow starts over cleanly
    (nothing partial is ever written).
    """
    return run_batch(settings, model, input_uri, output_uri, tags=tags)


def _drift_payload(exc: BatchCheckError, input_uri: str) -> dict[str, Any]:
    details = exc.details
    features = list(details.get("drifted_features") or [])
    return {
        "model": details.get("model_name"),
        "reason": "batch",
        "input": input_uri,
        "versions": [details.get("version")],
        "drifted_features": features,
        "drift_share": details.get("drift_share"),
        "run_id": details.get("run_id"),
        "report_run_ids": [details.get("run_id")],
        "summary": (
            f"batch input {input_uri}: {len(features)} features drifted "
            f"({', '.join(features)}); share {details.get('drift_share', 0):.2f}"
        ),
    }


@flow(
    name="batch-inference",
    flow_run_name=batch_run_name,
    on_failure=[notify_failure],
    on_crashed=[notify_failure],
)
def batch_inference(
    model_name: str,
    input: str,  # noqa: A002 - the flow parameter users see in the Prefect UI
    output: str,
    alias: str = ALIAS_CHAMPION,
    settings: Settings | None = None,
) -> BatchResult:
    """Predict a table (local or ``s3://``) with a registered model, after checking it.

    Args:
        model_name: registered model; ``NAME@ALIAS``, ``NAME/VERSION`` or
            ``models:/NAME/VERSION`` name the version directly.
        input: CSV/Parquet path or ``s3://`` URI of the rows to predict.
        output: where the predictions go (``.parquet``/``.pq``/``.csv``/``.csv.gz``).
        alias: the alias to use when ``model_name`` is a bare name.
        settings: effective settings; loaded from mlops.toml and MLOPS_* when left out.

    Raises:
        BatchCheckError: drift or outliers beyond the thresholds (the flow fails; on drift
            ``mlops.drift.detected`` is emitted first). Nothing was written.
    """
    settings = flow_settings(settings)
    logger = get_run_logger()
    reference = model_reference(model_name, alias)
    tags = {Tags.PREFECT_FLOW_RUN_ID: str(flow_run.id)}
    try:
        with forward_mlops_logs():
            result = batch_task(settings, reference, input, output, tags)
    except BatchCheckError as exc:
        name = str(exc.details.get("model_name") or parse_model_ref(reference)[0])
        emitted = None
        if "drift" in exc.reason.split("+"):
            payload = _drift_payload(exc, input)
            emit_model_event(Events.DRIFT_DETECTED, name, payload)
            emitted = Events.DRIFT_DETECTED
            logger.warning("emitted %s for %s: %s", Events.DRIFT_DETECTED, name, payload["summary"])
        publish(
            settings,
            artifact_key(name, "batch"),
            batch_failure_summary(reference, input, exc, emitted),
            runs=[RunRef("batch run", exc.details.get("run_id"))],
        )
        raise
    logger.info(
        "%d predictions of %s v%s written to %s (outlier share %.2f%%, drift share %s); "
        "MLflow run %s in %r",
        result.rows,
        result.model_name,
        result.version,
        result.output,
        100 * result.outlier_share,
        f"{result.drift_share:.2f}" if result.drift_share is not None else "not checked",
        result.run_id,
        result.experiment,
    )
    publish(
        settings,
        artifact_key(result.model_name, "batch"),
        batch_summary(result),
        runs=[RunRef("batch run", result.run_id)],
    )
    return result
