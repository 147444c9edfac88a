"""The training pipeline, declared once: prepare → train → evaluate (gate) → baseline →
register, all in one MLflow run of experiment ``<model>``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from mlops.pipelines.spec import (
    Param,
    Pipeline,
    Step,
    StepCall,
    StepContext,
    call_directly,
    run_pipeline,
)
from mlops.stages import (
    BaselineResult,
    EvaluationResult,
    PipelineResult,
    PreparedData,
    RegisteredModel,
    TrainedModel,
    baseline,
    close_training_run,
    evaluate,
    open_training_run,
    prepare,
    record_prepared,
    register,
    train,
)
from mlops.tracking import training_experiment

if TYPE_CHECKING:
    from mlops.backends import LogSink
    from mlops.settings import Settings

__all__ = ["TRAINING", "run_training_pipeline"]


def _prepare(context: StepContext) -> PreparedData:
    from mlops.data import BUILTIN_DATASETS
    from mlops.evaluation.thresholds import resolve_thresholds

    rows = context.param("rows")
    dataset, data = context.param("dataset"), context.param("data")
    if dataset is None and data is None and context.model_name in BUILTIN_DATASETS:
        dataset = context.model_name  # a model named like a built-in dataset trains on it
    prepared = prepare(
        context.settings,
        dataset=dataset,
        data=data,
        target=context.param("target"),
        task=context.param("task"),
        rows=int(rows) if rows else None,
    )
    record_prepared(context.settings, context.run_id, prepared)
    # the gate's thresholds must fit the task, known now: fail before training, not after
    resolve_thresholds(context.settings.gate, prepared.task, context.model_name)
    return prepared


# Each step takes the earlier results by the names of the steps that gave them.


def _train(context: StepContext, prepare: PreparedData) -> TrainedModel:
    return train(
        context.settings,
        prepare,
        model_name=context.model_name,
        run_id=context.run_id,
        hyperparameters=context.param("hyperparameters"),
        on_log=context.on_log,
    )


def _evaluate(context: StepContext, prepare: PreparedData, train: TrainedModel) -> EvaluationResult:
    return evaluate(context.settings, prepare, train)


def _baseline(context: StepContext, prepare: PreparedData, train: TrainedModel) -> BaselineResult:
    if context.settings.baseline.processing_job:  # the same step, in a job of the backend
        from mlops.pipelines.jobs import in_job

        return in_job(TRAINING, "baseline", context, run_id=train.run_id)  # type: ignore[return-value]
    return baseline(context.settings, prepare, train)


def _register(
    context: StepContext,
    prepare: PreparedData,
    train: TrainedModel,
    evaluate: EvaluationResult,
    baseline: BaselineResult,
) -> RegisteredModel:
    return register(context.settings, prepare, train, evaluate, baseline)


def _check(settings: Settings, model_name: str, params: Mapping[str, Any]) -> None:
    from mlops.evaluation.thresholds import validate_gate
    from mlops.hyperparams import validate_hyperparameters
    from mlops.stages.train import validate_model_name

    validate_model_name(model_name)
    validate_gate(settings.gate)  # a wrong threshold or parameter fails before any work
    validate_hyperparameters(settings.training, params.get("hyperparameters"))


def _open(settings: Settings, model_name: str, tags: dict[str, str]) -> str:
    return open_training_run(settings, model_name, tags=tags)


def _close(settings: Settings, run_id: str, failed: bool) -> None:
    close_training_run(settings, run_id, failed=failed)


TRAINING = Pipeline(
    name="training",
    flow_name="training-pipeline",
    description=(
        "Train, evaluate (quality gate), baseline and register an XGBoost model on a built-in "
        "dataset or your table; the registered version gets alias challenger."
    ),
    params=(
        Param("dataset", "str", None, "built-in problem: taxi, mammography or iris"),
        Param("data", "str", None, "path or s3:// URI of a CSV/parquet table"),
        Param("target", "str", None, "target column of data"),
        Param("task", "str", None, "regression, binary or multiclass (inferred if left out)"),
        Param("rows", "int", None, "rows of a built-in dataset"),
        Param("hyperparameters", "json", None, 'XGBoost overrides, e.g. {"max_depth": 8}'),
    ),
    steps=(
        Step("prepare", _prepare, (), PreparedData, "transient",
             ("dataset", "data", "target", "task", "rows"),
             "read, validate and split the data; check the gate fits the task"),
        Step("train", _train, ("prepare",), TrainedModel, "never", ("hyperparameters",),
             "run the training job and log the model (xgboost flavor)"),
        Step("evaluate", _evaluate, ("prepare", "train"), EvaluationResult, "never", (),
             "test metrics and the quality gate"),
        Step("baseline", _baseline, ("prepare", "train"), BaselineResult, "transient", (),
             "statistics, constraints and reference sample for monitoring"),
        Step("register", _register, ("prepare", "train", "evaluate", "baseline"),
             RegisteredModel, "transient", (), "register the version with alias challenger"),
    ),
    open_run=_open,
    close_run=_close,
    check=_check,
)  # fmt: skip


def _announce(call: StepCall, on_run: Callable[[str], None] | None) -> StepCall:
    """``call``, telling ``on_run`` the run id before the first step runs."""
    if on_run is None:
        return call
    told = False

    def announced(step: Step, context: StepContext, inputs: dict[str, Any]) -> Any:
        nonlocal told
        if not told:
            told = True
            on_run(context.run_id)
        return call(step, context, inputs)

    return announced


def run_training_pipeline(
    settings: Settings,
    *,
    model_name: str,
    tags: dict[str, str] | None = None,
    on_log: LogSink | None = None,
    call: StepCall = call_directly,
    on_run: Callable[[str], None] | None = None,
    **params: Any,
) -> PipelineResult:
    """Run :data:`TRAINING` in one MLflow run: every step in order (``call`` runs each one;
    the Prefect flow passes one that makes it a task).

    Args:
        on_run: told the MLflow run id as soon as the run is open.
        params: the pipeline's parameters (``dataset``, ``data``, ``target``, ``task``,
            ``rows``, ``hyperparameters``); an unknown name is refused. Without ``data``
            or ``dataset``, a model named like a built-in dataset trains on it.
    """
    run_id, done = run_pipeline(
        TRAINING,
        settings,
        model_name=model_name,
        params=params,
        tags=tags,
        call=_announce(call, on_run),
        on_log=on_log,
    )
    return PipelineResult(
        run_id=run_id,
        experiment=training_experiment(model_name),
        prepared=done["prepare"],
        trained=done["train"],
        evaluation=done["evaluate"],
        baseline=done["baseline"],
        registered=done["register"],
    )
