"""Evaluation metrics of a model's predictions on the test split, one set per task.

The prediction each task expects:

* regression: the predicted values, shape ``(n,)``;
* binary: the probability of class 1, shape ``(n,)`` (an ``(n, 2)`` matrix is accepted too);
* multiclass: the class-probability matrix, shape ``(n, k)``, labels ``0 .. k-1``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

from mlops.settings_sections import Threshold
from mlops.types import Task

__all__ = [
    "DEFAULT_THRESHOLDS",
    "METRIC_NAMES",
    "PRIMARY_METRIC",
    "compute_metrics",
    "metric_names",
    "validate_prediction",
]

#: The metrics :func:`compute_metrics` returns for each task, in order.
METRIC_NAMES: dict[Task, tuple[str, ...]] = {
    Task.REGRESSION: ("rmse", "mae", "r2"),
    Task.BINARY: ("auc", "accuracy", "f1", "logloss"),
    Task.MULTICLASS: ("accuracy", "macro_f1", "logloss"),
}

#: The metric the champion comparison uses, and its direction: ``"min"`` means lower is
#: better, ``"max"`` higher is better. Multiclass uses accuracy (not logloss) so that the
#: champion comparison and the default absolute threshold speak about the same number.
PRIMARY_METRIC: dict[Task, tuple[str, str]] = {
    Task.REGRESSION: ("rmse", "min"),
    Task.BINARY: ("auc", "max"),
    Task.MULTICLASS: ("accuracy", "max"),
}

#: Absolute bounds used when ``gate.thresholds`` is empty.
DEFAULT_THRESHOLDS: dict[Task, dict[str, Threshold]] = {
    Task.REGRESSION: {"r2": Threshold(min=0.5)},
    Task.BINARY: {"auc": Threshold(min=0.7)},
    Task.MULTICLASS: {"accuracy": Threshold(min=0.7)},
}

_BINARY_CUTOFF = 0.5


def metric_names(task: Task | str) -> tuple[str, ...]:
    """The names of the metrics computed for ``task``."""
    return METRIC_NAMES[Task(task)]


def validate_prediction(
    task: Task | str, y_true: Any, prediction: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert ``y_true`` and ``prediction`` to arrays of the task's shapes.

    Args:
        task: the kind of problem.
        y_true: the true targets, shape ``(n,)``.
        prediction: values, class-1 probabilities or a probability matrix (see module doc).

    Returns:
        ``(y_true, prediction)`` as numpy arrays; binary predictions are 1-D.

    Raises:
        ValueError: on mismatched lengths, wrong shapes, empty input or labels out of range.
    """
    task = Task(task)
    y = np.asarray(y_true)
    p = np.asarray(prediction, dtype=float)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(
            f"y_true must be one-dimensional, got shape {y.shape}; pass the target column only"
        )
    if len(y) == 0:
        raise ValueError("y_true is empty; evaluate on a test split with at least one row")
    if p.shape[:1] != (len(y),):
        raise ValueError(
            f"prediction has {p.shape[0] if p.ndim else 0} rows but y_true has {len(y)}; "
            "predict on exactly the rows of the test split"
        )
    if task is Task.REGRESSION:
        if p.ndim == 2 and p.shape[1] == 1:
            p = p.ravel()
        if p.ndim != 1:
            raise ValueError(
                f"a regression prediction must be one value per row, got shape {p.shape}"
            )
        return y.astype(float), p
    if task is Task.BINARY:
        if p.ndim == 2 and p.shape[1] == 2:
            p = p[:, 1]
        elif p.ndim == 2 and p.shape[1] == 1:
            p = p.ravel()
        if p.ndim != 1:
            raise ValueError(
                f"a binary prediction must be the probability of class 1 per row, shape (n,), "
                f"got shape {p.shape}"
            )
        _check_labels(y, 2)
        return y.astype(int), p
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(
            f"a multiclass prediction must be an (n, k) probability matrix with k >= 2, "
            f"got shape {p.shape}; use predict_proba, not predict"
        )
    _check_labels(y, p.shape[1])
    return y.astype(int), p


def _check_labels(y: np.ndarray, k: int) -> None:
    try:
        as_float = y.astype(float)
    except (TypeError, ValueError):
        raise ValueError(
            f"y_true must hold integer class labels 0..{k - 1}, got values such as {y[0]!r}; "
            "encode the labels before evaluation"
        ) from None
    bad = ~np.isin(as_float, np.arange(k))
    if bad.any():
        raise ValueError(
            f"y_true holds labels outside 0..{k - 1} (for example {y[bad][0]!r}); "
            f"the prediction has {k} classes, so encode the labels as 0..{k - 1}"
        )


def compute_metrics(task: Task | str, y_true: Any, prediction: Any) -> dict[str, float]:
    """Compute the task's metrics as plain Python floats.

    Args:
        task: the kind of problem.
        y_true: the true targets of the test split.
        prediction: see the module docstring for the shape each task expects.

    Returns:
        ``{"rmse", "mae", "r2"}``, ``{"auc", "accuracy", "f1", "logloss"}`` or
        ``{"accuracy", "macro_f1", "logloss"}``. A metric that is undefined on this split
        (AUC with one class only, R² with one row) is ``nan``, which fails the gate.

    Raises:
        ValueError: see :func:`validate_prediction`.
    """
    task = Task(task)
    y, p = validate_prediction(task, y_true, prediction)
    if task is Task.REGRESSION:
        r2 = r2_score(y, p) if len(y) >= 2 else math.nan
        return {
            "rmse": float(root_mean_squared_error(y, p)),
            "mae": float(mean_absolute_error(y, p)),
            "r2": float(r2),
        }
    if task is Task.BINARY:
        labels = (p >= _BINARY_CUTOFF).astype(int)
        auc = roc_auc_score(y, p) if len(np.unique(y)) == 2 else math.nan
        return {
            "auc": float(auc),
            "accuracy": float(accuracy_score(y, labels)),
            "f1": float(f1_score(y, labels, zero_division=0)),
            "logloss": float(log_loss(y, np.clip(p, 0.0, 1.0), labels=[0, 1])),
        }
    k = p.shape[1]
    labels = p.argmax(axis=1)
    return {
        "accuracy": float(accuracy_score(y, labels)),
        "macro_f1": float(
            f1_score(y, labels, labels=list(range(k)), average="macro", zero_division=0)
        ),
        "logloss": float(log_loss(y, p, labels=list(range(k)))),
    }
