"""The monitor's look at labels and the challenger: live accuracy once ground truth joined,
and the window replayed through the ``challenger`` when the version monitored is the champion.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mlops.tracking import ALIAS_CHALLENGER, ALIAS_CHAMPION

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from mlops.monitoring.reference import Baseline
    from mlops.settings import Settings
    from mlops.stages.monitor import VersionReport

__all__ = ["as_float", "labelled_rows", "live_accuracy", "replay_challenger"]

_CHALLENGER_ROWS = 200_000  # replaying more rows through the challenger adds time, not insight


def as_float(series: pd.Series) -> pd.Series:
    """``series`` as floats, text that is no number as NaN (a CSV window may hold text)."""
    import pandas as pd

    return pd.to_numeric(series, errors="coerce").astype(float)


def labelled_rows(
    current: pd.DataFrame, ground_truth: list[dict[str, Any]], report: VersionReport
) -> pd.DataFrame | None:
    """The window's rows joined with their labels (``None`` when none has one)."""
    if not ground_truth:
        return None
    from mlops.capture import join_ground_truth

    joined, stats = join_ground_truth(current, ground_truth)
    labelled = joined[joined["label"].notna()]
    report.ground_truth_matched = len(labelled)
    report.accuracy["ground_truth_labels"] = float(stats.labels)
    report.accuracy["ground_truth_unknown_ids"] = float(stats.unknown_ids)
    return labelled if len(labelled) else None


def _load_model(model_name: str, version: str) -> Any:
    import mlflow.xgboost

    return mlflow.xgboost.load_model(f"models:/{model_name}/{version}")


def _scores(model: Any, baseline: Baseline, rows: pd.DataFrame) -> Any:
    from mlops.stages.evaluate import predict_scores
    from mlops.types import Task

    return predict_scores(model, rows[baseline.features], Task(baseline.task))


def _label_codes(baseline: Baseline, labels: pd.Series) -> Any:
    """Ground-truth labels as the class codes the metrics expect (0..k-1), or floats."""
    import numpy as np

    if baseline.task == "regression":
        return as_float(labels).to_numpy()
    classes = [str(c) for c in baseline.classes] or sorted({str(v) for v in labels})
    lookup = {c: i for i, c in enumerate(classes)}
    codes = [lookup.get(str(v).strip(), lookup.get(_int_text(v), -1)) for v in labels]
    return np.asarray(codes)


def _int_text(value: Any) -> str:
    try:
        return str(int(float(value)))
    except (TypeError, ValueError):
        return str(value)


def live_accuracy(
    model_name: str,
    version: str,
    baseline: Baseline,
    labelled: pd.DataFrame,
    test: dict[str, float],
    settings: Settings,
    report: VersionReport,
) -> dict[str, Any]:
    """Live metrics on labelled rows (the model's own scores, as at training) vs the test split."""
    from mlops.evaluation import compute_metrics
    from mlops.evaluation.decay import check_decay

    y = _label_codes(baseline, labelled["label"])
    usable = (y >= 0) if baseline.task != "regression" else ~_isnan(y)
    rows = labelled[usable]
    if not len(rows):
        return {"matched": report.ground_truth_matched, "usable": 0}
    scores = _scores(_load_model(model_name, version), baseline, rows)
    live = compute_metrics(baseline.task, y[usable], scores)
    check = check_decay(baseline.task, live, test, settings.monitoring.max_accuracy_drop)
    report.accuracy.update({k: v for k, v in live.items() if math.isfinite(v)})
    report.accuracy_drop = check.dropped
    return {
        "matched": report.ground_truth_matched,
        "usable": int(usable.sum()),
        "live": live,
        "test": test,
        "check": check.to_dict(),
    }


def _isnan(values: Any) -> Any:
    import numpy as np

    return np.isnan(np.asarray(values, dtype=float))


def replay_challenger(
    client: MlflowClient,
    model_name: str,
    version: str,
    baseline: Baseline,
    current: pd.DataFrame,
    labelled: pd.DataFrame | None,
) -> dict[str, Any] | None:
    """Replay the window through the challenger (when this version is the champion)."""
    import numpy as np

    from mlops.evaluation import compute_metrics

    aliases = client.get_registered_model(model_name).aliases
    champion, challenger = aliases.get(ALIAS_CHAMPION), aliases.get(ALIAS_CHALLENGER)
    if challenger is None or str(champion) != version or str(challenger) == version:
        return None
    rows = (
        current
        if len(current) <= _CHALLENGER_ROWS
        else current.sample(_CHALLENGER_ROWS, random_state=0)
    )
    challenger_model = _load_model(model_name, str(challenger))
    champion_model = _load_model(model_name, version)
    theirs = _scores(challenger_model, baseline, rows)
    ours = _scores(champion_model, baseline, rows)
    result: dict[str, Any] = {"version": str(challenger), "rows": len(rows)}
    if baseline.task == "regression":
        diff = np.abs(np.asarray(theirs, float) - np.asarray(ours, float))
        scale = np.maximum(np.abs(np.asarray(ours, float)), 1e-9)
        result["agreement"] = float(np.mean(diff <= 0.05 * scale))
        result["mean_abs_difference"] = float(diff.mean())
    else:
        pick = (
            (lambda s: (np.asarray(s) >= 0.5).astype(int))
            if baseline.task == "binary"
            else (lambda s: np.asarray(s).argmax(axis=1))
        )
        result["agreement"] = float(np.mean(pick(theirs) == pick(ours)))
    if labelled is not None and len(labelled):
        y = _label_codes(baseline, labelled["label"])
        usable = (y >= 0) if baseline.task != "regression" else ~_isnan(y)
        if usable.any():
            subset = labelled[usable]
            result["champion_metrics"] = compute_metrics(
                baseline.task, y[usable], _scores(champion_model, baseline, subset)
            )
            result["challenger_metrics"] = compute_metrics(
                baseline.task, y[usable], _scores(challenger_model, baseline, subset)
            )
    return result
