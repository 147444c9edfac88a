"""The training pipeline as one plain function, and the run bookkeeping shared with the flow."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mlops.backends import LogSink
from mlops.stages._artifacts import save_result
from mlops.stages.baseline import baseline
from mlops.stages.evaluate import evaluate
from mlops.stages.prepare import prepare
from mlops.stages.register import register
from mlops.stages.results import PipelineResult, PreparedData
from mlops.stages.train import train, validate_model_name
from mlops.tracking import Tags, connect, finish_run, start_run, training_experiment

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = [
    "close_training_run",
    "open_training_run",
    "record_prepared",
    "run_training_pipeline",
    "training_run",
]


def open_training_run(
    settings: Settings, model_name: str, *, tags: dict[str, str] | None = None
) -> str:
    """Open the MLflow run of one training-pipeline execution in experiment ``<model>``."""
    validate_model_name(model_name)
    client = connect(settings)
    return start_run(
        client,
        settings,
        experiment=training_experiment(model_name),
        run_name=None,
        tags={Tags.STAGE: "training", Tags.MODEL_NAME: model_name, **(tags or {})},
    )


def record_prepared(settings: Settings, run_id: str, prepared: PreparedData) -> None:
    """Tag the run with what was prepared: source, digest, task and how it was chosen."""
    client = connect(settings)
    for key, value in {
        Tags.DATA_SOURCE: prepared.source,
        Tags.DATA_DIGEST: prepared.digest,
        Tags.PREPARED_URI: prepared.uri,
        Tags.TARGET: prepared.target,
        Tags.TASK: str(prepared.task),
        Tags.TASK_INFERRED: str(prepared.task_inferred).lower(),
        "mlops.task_reason": prepared.task_reason[:5000],
    }.items():
        client.set_tag(run_id, key, value)
    if prepared.notes:
        client.set_tag(run_id, "mlops.prepare_notes", "; ".join(prepared.notes)[:5000])
    save_result(client, run_id, "prepare", prepared)


def close_training_run(settings: Settings, run_id: str, *, failed: bool) -> None:
    """Mark the run finished or failed."""
    finish_run(connect(settings), run_id, failed=failed)


@contextmanager
def training_run(
    settings: Settings, model_name: str, *, tags: dict[str, str] | None = None
) -> Iterator[str]:
    """Open the training run, yield its id, and close it FINISHED, or FAILED on any error."""
    run_id = open_training_run(settings, model_name, tags=tags)
    try:
        yield run_id
    except BaseException:
        close_training_run(settings, run_id, failed=True)
        raise
    close_training_run(settings, run_id, failed=False)


def run_training_pipeline(
    settings: Settings,
    *,
    model_name: str,
    dataset: str | None = None,
    data: str | None = None,
    target: str | None = None,
    task: str | None = None,
    rows: int | None = None,
    hyperparameters: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    on_log: LogSink | None = None,
) -> PipelineResult:
    """prepare → train → evaluate (gate) → baseline → register, without an orchestrator.

    The ``training-pipeline`` Prefect flow runs the same stages as tasks; this function is
    what the MLproject ``main`` entry point and the benchmark's anchor call.
    """
    with training_run(settings, model_name, tags=tags) as run_id:
        prepared = prepare(
            settings, dataset=dataset, data=data, target=target, task=task, rows=rows
        )
        record_prepared(settings, run_id, prepared)
        trained = train(
            settings,
            prepared,
            model_name=model_name,
            run_id=run_id,
            hyperparameters=hyperparameters,
            on_log=on_log,
        )
        evaluation = evaluate(settings, prepared, trained)
        base = baseline(settings, prepared, trained)
        registered = register(settings, prepared, trained, evaluation, base)
    return PipelineResult(
        run_id=run_id,
        experiment=training_experiment(model_name),
        prepared=prepared,
        trained=trained,
        evaluation=evaluation,
        baseline=base,
        registered=registered,
    )
