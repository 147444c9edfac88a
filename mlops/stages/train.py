"""Train: run the training job on the backend, then log curves and the model to MLflow."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.backends import LogSink, TrainingJobSpec, get_backend
from mlops.errors import ConfigError, TrainingError
from mlops.settings_sections import TrainingSettings
from mlops.stages._artifacts import save_result
from mlops.stages._progress import stage_done, stage_started
from mlops.stages.prepare import load_split
from mlops.stages.results import PreparedData, TrainedModel
from mlops.tracking import SPLIT_CONTEXTS, DatasetRef, Tags, connect, log_datasets, model_metrics
from mlops.training import CURVES_FILE, METADATA_FILE, MODEL_FILE
from mlops.types import Task

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Metric

    from mlops.settings import Settings

__all__ = [
    "load_xgboost_model",
    "model_requirements",
    "resolve_hyperparameters",
    "train",
    "validate_model_name",
]

logger = logging.getLogger(__name__)
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def validate_model_name(name: str) -> str:
    """Model names become experiment, job and endpoint names: keep them portable."""
    if not _MODEL_NAME.fullmatch(name or ""):
        raise ConfigError(
            f"model name {name!r} is not valid: use 1-63 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit (e.g. --model-name taxi-fare)"
        )
    return name


def resolve_hyperparameters(
    settings: Settings, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Settings' hyperparameters with ``overrides`` applied and validated."""
    merged = settings.training.model_dump()
    for key, value in (overrides or {}).items():
        if key in TrainingSettings.model_fields:
            merged[key] = value
        else:
            merged.setdefault("extra", {})[key] = value
    try:
        return TrainingSettings.model_validate(merged).hyperparameters()
    except Exception as exc:
        raise ConfigError(
            f"invalid hyperparameters {overrides}: {exc}; see `mlops config show` for the "
            "accepted names and ranges"
        ) from None


def _job_name(model_name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = re.sub(r"[^A-Za-z0-9-]", "-", model_name)[:30].strip("-") or "model"
    return f"{base}-{stamp}-{uuid.uuid4().hex[:6]}"


def load_xgboost_model(model_dir: Path, task: Task) -> Any:
    """Load the native-format model a training job wrote into its sklearn-API class."""
    import xgboost as xgb

    model = xgb.XGBRegressor() if task is Task.REGRESSION else xgb.XGBClassifier()
    model.load_model(model_dir / MODEL_FILE)
    return model


def model_requirements() -> list[str]:
    """Exact pins the logged model needs to load (what MLflow would otherwise infer by
    importing the model in a subprocess, which costs seconds per model)."""
    from importlib.metadata import version

    return [
        f"{dist}=={version(dist)}"
        for dist in ("mlflow", "xgboost", "scikit-learn", "pandas", "numpy", "scipy")
    ]


def code_tags() -> dict[str, str]:
    """Lineage tags of the code that runs: its digest, git commit and uncommitted changes."""
    from mlops.code_version import code_revision

    revision = code_revision()
    tags = {Tags.CODE_DIGEST: revision.digest}
    if revision.commit is not None:
        tags[Tags.GIT_COMMIT] = revision.commit
    if revision.dirty is not None:
        tags[Tags.CODE_DIRTY] = str(revision.dirty).lower()
    return tags


def _fingerprint(prepared: PreparedData, hyperparameters: dict[str, Any]) -> str:
    import xgboost as xgb

    from mlops import __version__
    from mlops.code_version import code_revision

    payload = json.dumps(
        {
            "data": prepared.digest,
            "hp": hyperparameters,
            "mlops": __version__,
            "code": code_revision().digest,  # a change to the code that runs trains anew
            "xgboost": xgb.__version__,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def train(
    settings: Settings,
    prepared: PreparedData,
    *,
    model_name: str,
    run_id: str,
    hyperparameters: dict[str, Any] | None = None,
    on_log: LogSink | None = None,
) -> TrainedModel:
    """Run the training job and log its model (xgboost flavor), curves and inputs to ``run_id``.

    Args:
        settings: effective settings (backend, hyperparameters, seed).
        prepared: output of the prepare stage.
        model_name: registered model name the run belongs to.
        run_id: MLflow run to log into.
        hyperparameters: overrides of ``settings.training``.
        on_log: receives each line the training program prints.
    """
    import mlflow
    import mlflow.xgboost
    from mlflow.entities import Param
    from mlflow.models import infer_signature

    from mlops.evaluation.plots import plot_learning_curves

    validate_model_name(model_name)
    params = resolve_hyperparameters(settings, hyperparameters)
    job_params = {
        **params,
        "target": prepared.target,
        "task": str(prepared.task),
        "seed": settings.seed,
        "classes": json.dumps(prepared.classes),
    }
    if prepared.task is Task.MULTICLASS:
        job_params["num_class"] = len(prepared.classes)
    job_name = _job_name(model_name)
    stage_started("train", f"job {job_name} on the {settings.backend} backend")
    backend = get_backend(settings)
    spec = TrainingJobSpec(
        job_name=job_name,
        channels={
            "train": str(prepared.split_path("train")),
            "validation": str(prepared.split_path("validation")),
        },
        hyperparameters=job_params,
    )
    result = backend.run_training_job(spec, on_log=on_log)
    if result.status != "Completed":
        raise TrainingError(
            f"training job {job_name} {result.status.lower()}: {result.failure_reason}; "
            f"its files are in {result.model_dir.parent}"
        )
    metadata = json.loads((result.model_dir / METADATA_FILE).read_text())
    # The built-in image's curves come from its logs: absent when they could not be read.
    curves_file = result.output_dir / "data" / CURVES_FILE
    curves: dict[str, dict[str, list[float]]] = (
        json.loads(curves_file.read_text()) if curves_file.is_file() else {}
    )
    model = load_xgboost_model(result.model_dir, prepared.task)

    client = connect(settings)
    now = int(datetime.now(UTC).timestamp() * 1000)
    best = int(metadata["best_iteration"])
    logged_params = {
        **{k: v for k, v in params.items() if k != "extra"},
        **{f"extra.{k}": v for k, v in params.get("extra", {}).items()},
        "features": ",".join(prepared.features),
        "n_train": prepared.rows["train"],
        "n_validation": prepared.rows["validation"],
        "n_test": prepared.rows["test"],
        "best_iteration": best,
        "backend": settings.backend,
    }
    client.log_batch(
        run_id,
        params=[Param(k, str(v)[:6000]) for k, v in logged_params.items()],
        tags=[],
    )
    for key, value in {
        Tags.TRAINING_JOB: job_name,
        Tags.BACKEND: settings.backend,
        **({Tags.TRAINING_JOB_ARN: result.job_arn} if result.job_arn else {}),
        **code_tags(),
    }.items():
        client.set_tag(run_id, key, value)

    train_frame = load_split(prepared, "train")
    datasets = log_datasets(client, run_id, _split_datasets(prepared, train_frame))
    features = train_frame[prepared.features]
    example = features.head(5)
    fingerprint = _fingerprint(prepared, params)
    experiment_id = client.get_run(run_id).info.experiment_id
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # Integer columns stay integers on purpose: callers pass the training dtypes, and
        # MLflow refuses int64 input for a double column. Its hint about that is noise here.
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        if curves:
            plot = plot_learning_curves(
                curves, Path(tmp) / "learning_curves.png", best_iteration=best
            )
            client.log_artifact(run_id, str(plot), "plots")
        else:
            logger.info("training job %s left no learning curves: no plot", job_name)
        # The logged model belongs to the run's experiment (MLflow would otherwise put it,
        # and its artifacts, in the default experiment under the working directory), and is
        # named after the registered model it becomes a version of.
        logged_model = client.create_logged_model(
            experiment_id=experiment_id,
            name=model_name,
            source_run_id=run_id,
            params={k: str(v)[:6000] for k, v in logged_params.items()},
            tags={Tags.FINGERPRINT: fingerprint, Tags.MODEL_NAME: model_name},
        )
        # Logged before the curves: log_model copies the run's metrics at ``step`` to the
        # model without their datasets; the model's own are logged below.
        logged = mlflow.xgboost.log_model(
            model,
            name=model_name,
            run_id=run_id,
            model_id=logged_model.model_id,
            step=best,
            signature=infer_signature(example, model.predict(example)),
            input_example=example,
            model_format="ubj",
            pip_requirements=model_requirements(),
            metadata={
                "mlops": {
                    "task": str(prepared.task),
                    "target": prepared.target,
                    "features": prepared.features,
                    "classes": prepared.classes,
                    "best_iteration": best,
                    "fingerprint": fingerprint,
                }
            },
            tags={Tags.FINGERPRINT: fingerprint},
        )
    model_id = getattr(logged, "model_id", None) or logged_model.model_id
    metrics = _curve_metrics(curves, best, run_id=run_id, model_id=model_id,
                             datasets=datasets, timestamp_ms=now)  # fmt: skip
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    stage_done(
        "train",
        f"best iteration {metadata['best_iteration']} of {metadata['rounds']} "
        f"in {result.duration_s:.1f}s",
    )
    trained = TrainedModel(
        model_name=model_name,
        run_id=run_id,
        model_uri=logged.model_uri,
        model_id=model_id,
        job_name=job_name,
        job_arn=result.job_arn,
        best_iteration=metadata["best_iteration"],
        rounds=metadata["rounds"],
        hyperparameters=params,
        fingerprint=fingerprint,
        duration_s=result.duration_s,
    )
    save_result(client, run_id, "train", trained)
    return trained


def _split_datasets(prepared: PreparedData, train_frame: pd.DataFrame) -> dict[str, Any]:
    """Each split as an MLflow dataset, by its context (``training``, ``validation``, ...)."""
    import mlflow

    found: dict[str, Any] = {}
    for split, context in SPLIT_CONTEXTS.items():
        frame = train_frame if split == "train" else load_split(prepared, split)
        with warnings.catch_warnings():
            # MLflow registers its local-file source twice and warns that it is ambiguous.
            warnings.filterwarnings("ignore", message=".*interpreted in multiple ways")
            found[context] = mlflow.data.from_pandas(
                frame,
                source=str(prepared.split_path(split)),
                name=f"{prepared.source}:{split}",
                targets=prepared.target,
            )
    return found


def _curve_metrics(
    curves: dict[str, dict[str, list[float]]],
    best: int,
    *,
    run_id: str,
    model_id: str,
    datasets: dict[str, DatasetRef],
    timestamp_ms: int,
) -> list[Metric]:
    """Every round's ``<split>_<metric>`` for the run; the best round's values also belong
    to the logged model, measured on the split's dataset (its page shows those)."""
    from mlflow.entities import Metric

    metrics: list[Metric] = []
    for split, by_metric in curves.items():
        dataset = datasets.get(SPLIT_CONTEXTS.get(split, split))
        for name, values in by_metric.items():
            key = f"{split}_{name}"
            chosen = min(best, len(values) - 1)
            for step, value in enumerate(values):
                if step == chosen:
                    metrics += model_metrics(
                        {key: value},
                        run_id=run_id,
                        model_id=model_id,
                        dataset=dataset,
                        step=step,
                        timestamp_ms=timestamp_ms,
                    )
                else:
                    metrics.append(Metric(key, float(value), timestamp_ms, step))
    return metrics
