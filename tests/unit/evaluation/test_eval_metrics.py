from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, log_loss, roc_auc_score

from mlops.evaluation.metrics import (
    DEFAULT_THRESHOLDS,
    METRIC_NAMES,
    PRIMARY_METRIC,
    compute_metrics,
    metric_names,
)
from mlops.types import Task


def test_regression_metrics_match_hand_computed_values() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.0, 2.0, 3.0, 6.0])
    m = compute_metrics(Task.REGRESSION, y, p)
    assert set(m) == {"rmse", "mae", "r2"}
    assert m["rmse"] == pytest.approx(1.0)  # sqrt(4 / 4)
    assert m["mae"] == pytest.approx(0.5)  # 2 / 4
    assert m["r2"] == pytest.approx(1 - 4 / 5)  # SS_res = 4, SS_tot = 5
    assert all(type(v) is float for v in m.values())


def test_binary_metrics_match_sklearn() -> None:
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.1, 0.6, 0.8, 0.4, 0.9, 0.2])
    m = compute_metrics("binary", y, p)
    labels = (p >= 0.5).astype(int)
    assert set(m) == {"auc", "accuracy", "f1", "logloss"}
    assert m["auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(f1_score(y, labels))
    assert m["logloss"] == pytest.approx(log_loss(y, p))
    assert all(type(v) is float for v in m.values())


def test_binary_accepts_two_column_probabilities() -> None:
    y = np.array([0, 1, 1, 0])
    p1 = np.array([0.2, 0.7, 0.6, 0.4])
    assert compute_metrics(Task.BINARY, y, np.column_stack([1 - p1, p1])) == compute_metrics(
        Task.BINARY, y, p1
    )


def test_binary_auc_is_nan_with_one_class() -> None:
    m = compute_metrics(Task.BINARY, np.array([1, 1, 1]), np.array([0.9, 0.8, 0.3]))
    assert math.isnan(m["auc"])
    assert m["accuracy"] == pytest.approx(2 / 3)


def test_multiclass_metrics_with_missing_class_in_split() -> None:
    # class 2 never appears in y_true: must not crash
    y = np.array([0, 1, 1, 0])
    p = np.array(
        [
            [0.7, 0.2, 0.1],
            [0.1, 0.8, 0.1],
            [0.5, 0.3, 0.2],
            [0.6, 0.3, 0.1],
        ]
    )
    m = compute_metrics(Task.MULTICLASS, y, p)
    assert set(m) == {"accuracy", "macro_f1", "logloss"}
    assert m["accuracy"] == pytest.approx(0.75)
    expected_f1 = f1_score(y, p.argmax(1), labels=[0, 1, 2], average="macro", zero_division=0)
    assert m["macro_f1"] == pytest.approx(expected_f1)
    assert m["logloss"] == pytest.approx(-np.mean(np.log([0.7, 0.8, 0.3, 0.6])))


@pytest.mark.parametrize("task", list(Task))
def test_mismatched_lengths_raise_value_error(task: Task) -> None:
    y = np.array([0, 1, 1])
    p = np.array([[0.5, 0.5]] * 2) if task is Task.MULTICLASS else np.array([0.5, 0.5])
    with pytest.raises(ValueError, match="rows but y_true has 3"):
        compute_metrics(task, y, p)


def test_multiclass_requires_probability_matrix() -> None:
    with pytest.raises(ValueError, match="predict_proba"):
        compute_metrics(Task.MULTICLASS, np.array([0, 1]), np.array([0, 1]))


def test_labels_out_of_range_raise() -> None:
    with pytest.raises(ValueError, match="outside 0..1"):
        compute_metrics(Task.BINARY, np.array([0, 2]), np.array([0.1, 0.9]))


def test_empty_input_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        compute_metrics(Task.REGRESSION, np.array([]), np.array([]))


def test_tables_cover_every_task_consistently() -> None:
    for task in Task:
        metric, direction = PRIMARY_METRIC[task]
        assert metric in METRIC_NAMES[task]
        assert direction in {"min", "max"}
        assert set(DEFAULT_THRESHOLDS[task]) <= set(metric_names(task))
    assert DEFAULT_THRESHOLDS[Task.REGRESSION]["r2"].min == 0.5
    assert DEFAULT_THRESHOLDS[Task.BINARY]["auc"].min == 0.7
    assert DEFAULT_THRESHOLDS[Task.MULTICLASS]["accuracy"].min == 0.7
