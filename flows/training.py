"""The ``training-pipeline`` flow: prepare → train → evaluate (gate) → baseline → register.

Each task calls one ``mlops.stages`` function and passes small results (names, URIs).
"""

from __future__ import annotations

import re
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows.artifacts import ModelLink, RunRef, artifact_key, publish
from flows.hooks import forward_mlops_logs, notify_failure
from flows.run_names import training_run_name
from flows.summaries import failure_summary, training_summary
from mlops import stages
from mlops.data import BUILTIN_DATASETS
from mlops.errors import (
    ConfigError,
    DataError,
    DatasetNotFoundError,
    GateFailedError,
    MlopsError,
)
from mlops.evaluation.thresholds import resolve_thresholds, validate_gate
from mlops.hyperparams import validate_hyperparameters
from mlops.settings import Settings, load_settings
from mlops.stages.results import (
    BaselineResult,
    EvaluationResult,
    PipelineResult,
    PreparedData,
    RegisteredModel,
    TrainedModel,
)
from mlops.tracking import Tags, training_experiment

__all__ = ["training_pipeline"]

_ROUND = re.compile(r"^\[(\d+)\]")
_TASK_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Retry what may pass next time (S3 reads, the tracking store), not bad data or settings."""
    exc = state.data
    if isinstance(exc, ConfigError | GateFailedError):
        return False
    if isinstance(exc, DataError):
        # Only a failed read may pass later: it wraps the network/S3 error. Bad content (a
        # missing column, an unparseable file: ValueErrors underneath) fails the same way again.
        cause = exc.__cause__
        return (
            cause is not None
            and not isinstance(cause, ValueError)
            and not isinstance(exc, DatasetNotFoundError)
        )
    return True


_RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": 5,
    "retry_condition_fn": _worth_retrying,
}


@task(name="prepare", **_RETRIES, **_TASK_OPTIONS)
def prepare_task(
    settings: Settings,
    run_id: str,
    dataset: str | None,
    data: str | None,
    target: str | None,
    task_type: str | None,
    rows: int | None,
) -> PreparedData:
    """Read, validate and split the data (a failed S3 read is retried; bad data is not)."""
    prepared = stages.prepare(
        settings, dataset=dataset, data=data, target=target, task=task_type, rows=rows
    )
    stages.record_prepared(settings, run_id, prepared)
    return prepared


@task(name="train", **_TASK_OPTIONS)
def train_task(
    settings: Settings,
    prepared: PreparedData,
    model_name: str,
    run_id: str,
    hyperparameters: dict[str, Any] | None,
) -> TrainedModel:
    """Run the training job; its output goes to the task's logs every 10 rounds."""
    logger = get_run_logger()

    def on_log(line: str) -> None:
        match = _ROUND.match(line)
        if match is None or int(match.group(1)) % 10 == 0:
            logger.info("%s", line)

    return stages.train(
        settings,
        prepared,
        model_name=model_name,
        run_id=run_id,
        hyperparameters=hyperparameters,
        on_log=on_log,
    )


@task(name="evaluate", **_TASK_OPTIONS)
def evaluate_task(
    settings: Settings, prepared: PreparedData, trained: TrainedModel
) -> EvaluationResult:
    """Test metrics and the quality gate (a failed gate fails the flow)."""
    return stages.evaluate(settings, prepared, trained)


@task(name="baseline", **_RETRIES, **_TASK_OPTIONS)
def baseline_task(
    settings: Settings, prepared: PreparedData, trained: TrainedModel
) -> BaselineResult:
    """Statistics, constraints and reference sample for monitoring."""
    return stages.baseline(settings, prepared, trained)


@task(name="register", **_RETRIES, **_TASK_OPTIONS)
def register_task(
    settings: Settings,
    prepared: PreparedData,
    trained: TrainedModel,
    evaluation: EvaluationResult,
    baseline: BaselineResult,
) -> RegisteredModel:
    """Register the version with alias challenger (idempotent, so retries are safe)."""
    return stages.register(settings, prepared, trained, evaluation, baseline)


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
    settings = settings or load_settings()
    if dataset is None and data is None:
        dataset = model_name if model_name in BUILTIN_DATASETS else None
    validate_gate(settings.gate)  # a wrong threshold or parameter fails before any work
    validate_hyperparameters(settings.training, hyperparameters)
    logger = get_run_logger()
    tags = {Tags.PREFECT_FLOW_RUN_ID: str(flow_run.id)}
    key = artifact_key(model_name, "training")
    run_id = None
    try:
        with forward_mlops_logs(), stages.training_run(settings, model_name, tags=tags) as run_id:
            logger.info("MLflow run %s in experiment %r", run_id, training_experiment(model_name))
            prepared = prepare_task(settings, run_id, dataset, data, target, task, rows)
            resolve_thresholds(settings.gate, prepared.task, model_name)  # before training
            trained = train_task(settings, prepared, model_name, run_id, hyperparameters)
            evaluation = evaluate_task(settings, prepared, trained)
            baseline = baseline_task(settings, prepared, trained)
            registered = register_task(settings, prepared, trained, evaluation, baseline)
    except MlopsError as exc:
        reasons = exc.reasons if isinstance(exc, GateFailedError) else []
        publish(
            settings,
            key,
            failure_summary(f"train {model_name}: failed", exc, reasons),
            runs=[RunRef("training run", run_id, ("plots",))],
        )
        raise
    logger.info(
        "registered %s version %s (%s)",
        registered.name,
        registered.version,
        "new" if registered.created else "already registered for identical inputs",
    )
    result = PipelineResult(
        run_id=run_id,
        experiment=training_experiment(model_name),
        prepared=prepared,
        trained=trained,
        evaluation=evaluation,
        baseline=baseline,
        registered=registered,
    )
    publish(
        settings,
        key,
        training_summary(result),
        runs=[RunRef("training run", run_id, ("plots",))],
        models=[ModelLink(registered.name, registered.version)],
    )
    return result
