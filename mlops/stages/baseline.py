"""Baseline: per-feature statistics, constraints and a reference sample for monitoring."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.stages._artifacts import save_result
from mlops.stages._progress import stage_done, stage_started
from mlops.stages.evaluate import predict_scores
from mlops.stages.prepare import load_split
from mlops.stages.results import BaselineResult, PreparedData, TrainedModel
from mlops.tracking import Tags, connect
from mlops.types import Task

if TYPE_CHECKING:
    import pandas as pd

    from mlops.settings import Settings

__all__ = ["BASELINE_DIR", "PREDICTION_COLUMN", "STATISTICS_TABLE", "baseline", "statistics_table"]

BASELINE_DIR = "baseline"
PREDICTION_COLUMN = "prediction"
# The statistics as a table the MLflow UI shows (artifact view), and as a page.
STATISTICS_TABLE = f"{BASELINE_DIR}/statistics_table.json"
STATISTICS_PAGE = "statistics.html"


def statistics_table(statistics: dict[str, Any], constraints: dict[str, Any]) -> pd.DataFrame:
    """One row per feature: type, completeness, the numbers or the top values, and the
    range monitoring accepts."""
    import pandas as pd

    bounds = {c["name"]: c for c in constraints.get("features", [])}
    rows = []
    for feature in statistics["features"]:
        numeric = feature.get("numerical_statistics")
        block = numeric or feature.get("string_statistics") or {}
        common = block.get("common", {})
        present, missing = common.get("num_present", 0), common.get("num_missing", 0)
        limits = bounds.get(feature["name"], {}).get("num_constraints", {})
        quantiles = (numeric or {}).get("quantiles", {})
        top = (block.get("top_values") or {}) if not numeric else {}
        rows.append(
            {
                "feature": feature["name"],
                "type": feature["inferred_type"],
                "present": present,
                "missing_share": round(missing / (present + missing), 6)
                if present + missing
                else None,
                "mean": (numeric or {}).get("mean"),
                "std_dev": (numeric or {}).get("std_dev"),
                "min": (numeric or {}).get("min"),
                "p05": quantiles.get("p05"),
                "median": quantiles.get("p50"),
                "p95": quantiles.get("p95"),
                "max": (numeric or {}).get("max"),
                "distinct": block.get("distinct_count"),
                "top_values": ", ".join(f"{k} ({v})" for k, v in list(top.items())[:5]) or None,
                "allowed_min": limits.get("min"),
                "allowed_max": limits.get("max"),
            }
        )
    return pd.DataFrame(rows)


def _statistics_page(table: pd.DataFrame, rows: int, model_name: str) -> str:
    """A self-contained HTML page of the table (the MLflow UI previews it)."""
    from html import escape

    body = table.to_html(index=False, na_rep="", float_format=lambda x: f"{x:.6g}", escape=True)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Baseline statistics of {escape(model_name)}</title><style>"
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}</style></head><body>"
        f"<h2>Baseline statistics of {escape(model_name)}</h2>"
        f"<p>{rows} training rows. Monitoring flags values outside allowed_min..allowed_max "
        "and compares the distributions of live traffic with reference.parquet.</p>"
        f"{body}</body></html>"
    )


def baseline(settings: Settings, prepared: PreparedData, trained: TrainedModel) -> BaselineResult:
    """Log ``baseline/statistics.json``, ``constraints.json`` and ``reference.parquet``,
    and the statistics as a table (``statistics_table.json``) and a page
    (``statistics.html``) to read in the MLflow UI.

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
        table = statistics_table(statistics, constraints)
        (folder / STATISTICS_PAGE).write_text(
            _statistics_page(table, statistics["dataset"]["item_count"], trained.model_name),
            encoding="utf-8",
        )
        client.log_artifacts(trained.run_id, str(folder), BASELINE_DIR)
    logged = {a.path for a in client.list_artifacts(trained.run_id, BASELINE_DIR)}
    if STATISTICS_TABLE not in logged:  # log_table appends to a table logged before
        client.log_table(trained.run_id, data=table, artifact_file=STATISTICS_TABLE)

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
