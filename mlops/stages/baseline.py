"""Baseline: per-feature statistics, constraints and a reference sample for monitoring."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from mlops.stages._artifacts import save_result
from mlops.stages._progress import stage_done, stage_started
from mlops.stages.evaluate import predict_scores
from mlops.stages.prepare import load_split
from mlops.stages.results import BaselineResult, PreparedData, TrainedModel
from mlops.tracking import Tags, connect
from mlops.types import Task

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["BASELINE_DIR", "PREDICTION_COLUMN", "baseline"]

BASELINE_DIR = "baseline"
PREDICTION_COLUMN = "prediction"


def baseline(settings: Settings, prepared: PreparedData, trained: TrainedModel) -> BaselineResult:
    """Log ``baseline/statistics.json``, ``constraints.json`` and ``reference.parquet``.

    Statistics and constraints describe the training features (as SageMaker Model Monitor's
    baselining job does); the reference sample holds features, target and the model's
    prediction, for drift and model-signal checks later.
    """
    import mlflow.xgboost

    from mlops.data import write_parquet
    from mlops.monitoring.baseline import build_constraints, build_statistics, reference_sample

    stage_started("baseline")
    client = connect(settings)
    train = load_split(prepared, "train")
    features = train[prepared.features]
    statistics = build_statistics(features)
    constraints = build_constraints(features, statistics)
    sample = reference_sample(train, settings.baseline.sample_rows, settings.seed)
    model = mlflow.xgboost.load_model(trained.model_uri)
    scores = predict_scores(model, sample[prepared.features], prepared.task)
    if prepared.task is Task.MULTICLASS:
        sample = sample.assign(**{PREDICTION_COLUMN: scores.argmax(axis=1)})
    else:
        sample = sample.assign(**{PREDICTION_COLUMN: scores})

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / BASELINE_DIR
        folder.mkdir()
        (folder / "statistics.json").write_text(json.dumps(statistics, indent=2, allow_nan=False))
        (folder / "constraints.json").write_text(json.dumps(constraints, indent=2, allow_nan=False))
        write_parquet(sample, folder / "reference.parquet")
        (folder / "schema.json").write_text(
            json.dumps(
                {
                    "target": prepared.target,
                    "task": str(prepared.task),
                    "features": prepared.features,
                    "classes": prepared.classes,
                    "prediction_column": PREDICTION_COLUMN,
                },
                indent=2,
            )
        )
        client.log_artifacts(trained.run_id, str(folder), BASELINE_DIR)

    root = client.get_run(trained.run_id).info.artifact_uri.rstrip("/") + f"/{BASELINE_DIR}"
    client.set_tag(trained.run_id, Tags.BASELINE_URI, root)
    stage_done("baseline", f"{len(statistics['features'])} features, {len(sample)} reference rows")
    result = BaselineResult(
        uri=root,
        statistics_uri=f"{root}/statistics.json",
        constraints_uri=f"{root}/constraints.json",
        reference_uri=f"{root}/reference.parquet",
        reference_rows=len(sample),
    )
    save_result(client, trained.run_id, "baseline", result)
    return result
