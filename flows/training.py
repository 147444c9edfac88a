"""The ``training-pipeline`` flow, built from the declaration :data:`mlops.pipelines.TRAINING`.

prepare → train → evaluate (gate) → baseline → register: one Prefect task per declared step,
with the step's retry class; the flow adds what only Prefect has (the run's name, its
artifacts, the failure notification).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.artifacts import ModelLink, RunRef, artifact_key, publish
from flows.hooks import flow_settings, forward_mlops_logs, notify_failure
from flows.run_names import training_run_name
from flows.steps import step_tasks
from flows.summaries import failure_summary, training_summary
from mlops.errors import (
    GateFailedError,
    MlopsError,
)
from mlops.pipelines import TRAINING, run_training_pipeline
from mlops.settings import Settings
from mlops.stages.results import PipelineResult
from mlops.tracking import Tags, training_experiment

__all__ = ["training_pipeline"]



#: One task per step of the training pipeline's declaration (mlops.pipelines.TRAINING).
STEP_TASKS, _as_task = step_tasks(TRAINING)


@flow(
    name="training-pipeline",
    flow_run_name=training_run_name,
    on_failure=[notify_failure],
    on_crashed=[notify_failure],
    log_prints=True,
)
def training_pipeline(
    model_name: str = "taxi",
    dataset: str | None = None,
    data: str | None = None,
    target: str | None = None,
    task: str | None = None,
    rows: int | None = None,
    hyperparameters: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> PipelineResult:
    """Train, evaluate, baseline and register a model on a built-in dataset or your table.

    Args:
        model_name: registered model name (also the MLflow experiment).
        dataset: built-in problem: taxi, mammography or iris.
        data: path or s3:// URI of a CSV/parquet table (instead of ``dataset``).
        target: target column of ``data``.
        task: regression, binary or multiclass; inferred when left out.
        rows: size of a built-in dataset.
        hyperparameters: XGBoost overrides, e.g. ``{"max_depth": 8}``.
        settings: effective settings; loaded from mlops.toml and MLOPS_* when left out.
    """
    settings = flow_settings(settings)
    logger = get_run_logger()
    tags = {Tags.PREFECT_FLOW_RUN_ID: str(flow_run.id)}
    key = artifact_key(model_name, "training")
    run_id = None

    def opened(new_run_id: str) -> None:
        nonlocal run_id
        run_id = new_run_id
        logger.info("MLflow run %s in experiment %r", run_id, training_experiment(model_name))

    try:
        with forward_mlops_logs():
            result = run_training_pipeline(
                settings,
                model_name=model_name,
                tags=tags,
                call=_as_task,
                on_run=opened,
                dataset=dataset,
                data=data,
                target=target,
                task=task,
                rows=rows,
                hyperparameters=hyperparameters,
            )
    except MlopsError as exc:
        reasons = exc.reasons if isinstance(exc, GateFailedError) else []
        publish(
            settings,
            key,
            failure_summary(f"train {model_name}: failed", exc, reasons),
            runs=[RunRef("training run", run_id, ("plots",))],
        )
        raise
    registered = result.registered
    logger.info(
        "registered %s version %s (%s)",
        registered.name,
        registered.version,
        "new" if registered.created else "already registered for identical inputs",
    )
    publish(
        settings,
        key,
        training_summary(result),
        runs=[RunRef("training run", run_id, ("plots",))],
        models=[ModelLink(registered.name, registered.version)],
    )
    return result
