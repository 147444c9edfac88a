"""Evaluate: test-split metrics, a plot, and the quality gate (thresholds and champion)."""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import GateFailedError
from mlops.registry import get_alias_version
from mlops.stages._artifacts import save_result
from mlops.stages._progress import stage_done, stage_started
from mlops.stages.prepare import load_split
from mlops.stages.results import EvaluationResult, PreparedData, TrainedModel
from mlops.tracking import (
    ALIAS_CHAMPION,
    SPLIT_CONTEXTS,
    Tags,
    connect,
    model_metrics,
    run_datasets,
)
from mlops.types import Task

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlops.settings import Settings

__all__ = ["evaluate", "predict_scores"]

logger = logging.getLogger(__name__)


def predict_scores(model: Any, features: pd.DataFrame, task: Task) -> np.ndarray:
    """What the metrics need: values, P(class 1), or the class-probability matrix."""
    if task is Task.REGRESSION:
        return model.predict(features)
    import numpy as np

    proba = np.asarray(model.predict_proba(features), dtype=np.float64)
    if task is Task.BINARY:
        return proba[:, 1]
    return proba / proba.sum(axis=1, keepdims=True)  # float32 rows may not sum to 1 exactly


def _champion_scores(
    model_name: str, version: Any, test: pd.DataFrame, prepared: PreparedData
) -> tuple[dict[str, float] | None, str | None]:
    """Score the current champion on the same test rows, if it can read them."""
    import mlflow.xgboost

    from mlops.evaluation.metrics import compute_metrics

    uri = f"models:/{model_name}/{version.version}"
    try:
        info = mlflow.models.get_model_info(uri)
        meta = (info.metadata or {}).get("mlops", {})
    except Exception as exc:  # the champion's artifacts are gone or unreadable
        return None, f"champion v{version.version} could not be loaded ({exc}); not compared"
    if meta.get("task") != str(prepared.task) or meta.get("target") != prepared.target:
        return None, (
            f"champion v{version.version} solves {meta.get('task')}/{meta.get('target')}, "
            f"not {prepared.task}/{prepared.target}; not compared"
        )
    missing = [f for f in meta.get("features", []) if f not in test.columns]
    if missing:
        return None, f"champion v{version.version} needs features {missing}; not compared"
    champion = mlflow.xgboost.load_model(uri)
    scores = predict_scores(champion, test[meta["features"]], prepared.task)
    return compute_metrics(prepared.task, test[prepared.target].to_numpy(), scores), None


def evaluate(settings: Settings, prepared: PreparedData, trained: TrainedModel) -> EvaluationResult:
    """Compute test metrics, log them and a plot, and apply the quality gate.

    Raises:
        GateFailedError: the challenger failed the gate; the run is tagged with the reasons.
    """
    import mlflow.xgboost
    from mlflow.entities import Metric

    from mlops.evaluation.gate import check_gate
    from mlops.evaluation.metrics import compute_metrics
    from mlops.evaluation.plots import plot_evaluation
    from mlops.evaluation.thresholds import resolve_thresholds

    stage_started("evaluate", f"{prepared.rows['test']} test rows")
    client = connect(settings)
    test = load_split(prepared, "test")
    y_true = test[prepared.target].to_numpy()
    model = mlflow.xgboost.load_model(trained.model_uri)
    scores = predict_scores(model, test[prepared.features], prepared.task)
    metrics = compute_metrics(prepared.task, y_true, scores)

    champion = get_alias_version(client, trained.model_name, ALIAS_CHAMPION)
    # MLflow 3 gives version numbers as int; results and messages carry them as text
    champion_version = str(champion.version) if champion is not None else None
    champion_metrics, note = (None, None)
    if champion is not None:
        champion_metrics, note = _champion_scores(trained.model_name, champion, test, prepared)
        if note:
            logger.warning(note)
    chosen = resolve_thresholds(settings.gate, prepared.task, trained.model_name)
    gate = check_gate(
        prepared.task,
        metrics,
        thresholds=chosen.thresholds,
        sources=chosen.sources,
        champion_metrics=champion_metrics,
        champion_version=champion_version,
        margin=settings.gate.champion_margin,
    )

    now = int(time.time() * 1000)
    # the test metrics belong to the logged model too, measured on the test dataset
    logged = model_metrics(
        {f"test_{k}": v for k, v in metrics.items() if math.isfinite(v)},
        run_id=trained.run_id,
        model_id=trained.model_id,
        dataset=run_datasets(client, trained.run_id).get(SPLIT_CONTEXTS["test"]),
        timestamp_ms=now,
    )
    if champion_metrics:
        logged += [
            Metric(f"champion_test_{k}", v, now, 0)
            for k, v in champion_metrics.items()
            if math.isfinite(v)
        ]
    client.log_batch(trained.run_id, metrics=logged)
    client.set_tag(trained.run_id, Tags.GATE, "passed" if gate.passed else "failed")
    if not gate.passed:
        client.set_tag(trained.run_id, Tags.GATE_REASON, "; ".join(gate.reasons)[:5000])
        client.set_tag(
            trained.run_id,
            Tags.NOTE,
            "Quality gate **failed**, nothing was registered:\n\n"
            + "\n".join(f"- {reason}" for reason in gate.reasons)[:7000],
        )
    with tempfile.TemporaryDirectory() as tmp:
        plot = plot_evaluation(
            prepared.task,
            y_true,
            scores,
            Path(tmp) / "evaluation.png",
            class_labels=prepared.classes or None,
        )
        client.log_artifact(trained.run_id, str(plot), "plots")
        report = Path(tmp) / "gate.json"
        report.write_text(
            json.dumps(
                {
                    **gate.to_dict(),
                    "metrics": metrics,
                    "champion_version": champion_version,
                    "champion_metrics": champion_metrics,
                    "champion_note": note,
                },
                indent=2,
                default=str,
            )
        )
        client.log_artifact(trained.run_id, str(report), "evaluation")
    # the test split goes with the run, so an environment with another tracking store
    # evaluates the registered version through its endpoint on the same rows
    client.log_artifact(trained.run_id, str(prepared.split_path("test")), "evaluation")

    result = EvaluationResult(
        metrics=metrics,
        passed=gate.passed,
        reasons=gate.reasons,
        champion_version=champion_version,
        champion_metrics=champion_metrics,
        champion_note=note,
    )
    save_result(client, trained.run_id, "evaluate", result)
    if not gate.passed:
        stage_done("evaluate", "quality gate FAILED")
        raise GateFailedError(
            f"model {trained.model_name!r} (run {trained.run_id}) failed the quality gate: "
            + "; ".join(gate.reasons)
            + ". Nothing was registered. Improve the model or adjust [gate] in mlops.toml.",
            reasons=gate.reasons,
        )
    summary = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    stage_done("evaluate", f"gate passed ({summary})")
    return result
