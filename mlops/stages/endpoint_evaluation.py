"""Evaluation of a version through an endpoint: its test split sent as requests, the
answers scored against what training measured on the same rows."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from mlops.errors import RolloutError
from mlops.registry import get_version
from mlops.rollout.controller import variant_name_for
from mlops.stages._endpoint_rows import _model_features, _to_csv
from mlops.stages._progress import stage_done, stage_started
from mlops.tracking import Stages, Tags, connect, deployments_experiment, log_summary_run
from mlops.tracking.links import model_version_path, run_path
from mlops.types import Task

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from mlops.settings import Settings
    from mlops.stages.results import PreparedData

__all__ = ["EndpointEvaluation", "evaluate_on_endpoint"]


def _training_record(
    client: MlflowClient, mv: ModelVersion
) -> tuple[PreparedData, pd.DataFrame, dict[str, float], str]:
    """What training recorded for ``mv``: its prepared data, test split, test metrics, and
    a markdown reference to its run.

    Read from the training run's artifacts by their absolute URI (the version's
    ``mlops.training_artifacts_uri`` tag, in the shared artifact store), so an environment
    whose tracking store does not hold the run (prod, with a central registry) reads them
    too. A version registered without that tag is looked up in this tracking store.
    """
    import json

    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from mlops.stages.results import EvaluationResult, PreparedData

    name, version = mv.name, str(mv.version)
    root = mv.tags.get(Tags.TRAINING_ARTIFACTS)
    link = f"training run {mv.run_id}"
    try:
        run = client.get_run(mv.run_id)
    except MlflowException:
        run = None  # in another environment's tracking store
    if run is not None:
        link = f"[training run]({run_path(run.info.experiment_id, mv.run_id)})"
        root = root or run.info.artifact_uri
    if not root:
        raise RolloutError(
            f"{name} v{version}'s training run {mv.run_id} is not in this environment's "
            f"tracking store and the version has no {Tags.TRAINING_ARTIFACTS} tag, so its test "
            "split cannot be found; evaluate it in the environment that trained it, or "
            "retrain it with this version of mlops"
        )
    root = root.rstrip("/")

    def text(path: str) -> str:
        try:
            return mlflow.artifacts.load_text(f"{root}/{path}")
        except Exception as exc:  # MLflow raises several kinds for a missing artifact
            raise RolloutError(
                f"cannot read {path} of {name} v{version}'s training run at {root}: {exc}; "
                "the artifact store must be reachable from this environment "
                "(settings artifact_location)"
            ) from None

    prepared = PreparedData.model_validate(json.loads(text("mlops/prepare.json")))
    evaluated = EvaluationResult.model_validate(json.loads(text("mlops/evaluate.json")))
    try:
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"{root}/evaluation/test.parquet")
    except Exception:  # trained before the split was logged: the prepared folder
        path = str(prepared.split_path("test"))
        if not Path(path).is_file():
            raise RolloutError(
                f"{name} v{version}'s test split is neither in its training run's artifacts "
                f"({root}/evaluation/test.parquet) nor at {path}; retrain it with this "
                "version of mlops"
            ) from None
    metrics = {k: v for k, v in evaluated.metrics.items() if math.isfinite(v)}
    return prepared, pd.read_parquet(path), metrics, link


class EndpointEvaluation(BaseModel):
    """Metrics of a version computed from its endpoint's answers on the test split."""

    model_name: str
    version: str
    endpoint: str
    rows: int
    metrics: dict[str, float]
    training_metrics: dict[str, float]
    run_id: str
    passed: bool
    reason: str


def evaluate_on_endpoint(
    settings: Settings,
    model_name: str,
    version: str,
    *,
    endpoint: str | None = None,
    batch_rows: int = 500,
    tolerance: float = 0.01,
    tags: dict[str, str] | None = None,
) -> EndpointEvaluation:
    """Send the version's held-out test split through ``endpoint`` and score the answers.

    Like the safe-deployment pipeline's RMSE check: the endpoint's metric must match the
    training-time test metric within ``tolerance`` (relative), which proves the served
    artefact, the serving code and the endpoint routing agree with what was evaluated.
    Metrics are logged to a run of ``<model>/deployments`` (``mlops.stage=endpoint-evaluation``).
    """
    import numpy as np

    from mlops.backends import get_endpoint_backend
    from mlops.evaluation.metrics import compute_metrics
    from mlops.stages.deploy import endpoint_name

    client = connect(settings)
    mv = get_version(client, model_name, version)
    version = str(mv.version)
    endpoint = endpoint or endpoint_name(settings, model_name, "dev")
    prepared, test, trained, training_link = _training_record(client, mv)
    features = _model_features(model_name, version)
    variant = variant_name_for(version)
    stage_started("endpoint evaluation", f"{len(test)} test rows through {endpoint}/{variant}")
    answers: list[float] = []
    with get_endpoint_backend(settings) as backend:
        for start in range(0, len(test), batch_rows):
            chunk = test.iloc[start : start + batch_rows]
            result = backend.invoke(
                endpoint,
                _to_csv(chunk[features]),
                content_type="text/csv",
                accept="text/csv",
                target_variant=variant,
            )
            if result.status != 200:
                raise RolloutError(
                    f"endpoint {endpoint} answered test rows {start}..{start + len(chunk)} with "
                    f"HTTP {result.status}: {result.body[:300].decode('utf-8', 'replace')}"
                )
            values = result.predictions()
            if len(values) != len(chunk):
                raise RolloutError(
                    f"endpoint {endpoint} answered test rows {start}..{start + len(chunk)} with "
                    f"{len(values)} predictions for {len(chunk)} rows: "
                    f"{result.body[:300].decode('utf-8', 'replace')}"
                )
            answers += values
    y_true = test[prepared.target].to_numpy()
    prediction = np.asarray(answers, dtype=np.float64)
    task = prepared.task
    if task is Task.REGRESSION:
        metrics = compute_metrics(task, y_true, prediction)
    else:  # endpoints answer labels, like pyfunc: label metrics only
        from sklearn.metrics import accuracy_score, f1_score

        metrics = {
            "accuracy": float(accuracy_score(y_true, prediction)),
            "f1" if task is Task.BINARY else "macro_f1": float(
                f1_score(y_true, prediction, average="binary" if task is Task.BINARY else "macro")
            ),
        }
    key = "rmse" if task is Task.REGRESSION else "accuracy"
    expected, got = trained.get(key), metrics[key]
    if expected is None or not math.isfinite(got):
        passed, reason = math.isfinite(got), f"{key}={got:.4g} (no training-time {key} to compare)"
    else:
        drift = abs(got - expected) / max(abs(expected), 1e-12)
        passed = drift <= tolerance
        reason = (
            f"endpoint {key}={got:.4g} vs training test {key}={expected:.4g} "
            f"({drift:.2%} apart, tolerance {tolerance:.0%})"
        )
    verdict = "passed" if passed else "failed"
    note = (
        f"Evaluation of [{model_name} v{version}]({model_version_path(model_name, version)}) "
        f"through endpoint **{endpoint}** (variant `{variant}`) on the {len(test)} rows of the "
        f"{training_link}'s test split: **{verdict}**. {reason}."
    )
    run_id = log_summary_run(
        client,
        settings,
        experiment=deployments_experiment(model_name),
        run_name=f"evaluate {model_name} v{version} on {endpoint}",
        tags={
            Tags.STAGE: Stages.ENDPOINT_EVALUATION,
            Tags.MODEL_NAME: model_name,
            Tags.MODEL_VERSION: version,
            Tags.ENDPOINT: endpoint,
            Tags.VARIANT: variant,
            Tags.ENDPOINT_EVALUATION: verdict,
            Tags.NOTE: note,
            **(tags or {}),
        },
        metrics={f"endpoint_{k}": v for k, v in metrics.items()},
        params={"version": version, "endpoint": endpoint, "rows": str(len(test))},
        failed=not passed,
    )
    client.set_model_version_tag(model_name, version, Tags.ENDPOINT_EVALUATION_RUN_ID, run_id)
    stage_done("endpoint evaluation", reason)
    evaluation = EndpointEvaluation(
        model_name=model_name,
        version=version,
        endpoint=endpoint,
        rows=len(test),
        metrics=metrics,
        training_metrics=trained,
        run_id=run_id,
        passed=passed,
        reason=reason,
    )
    if not passed:
        raise RolloutError(
            f"evaluation of {model_name} v{version} through {endpoint} failed: {reason}"
        )
    return evaluation
