"""Evaluation plots written as PNG files (matplotlib's Agg backend, imported on first use)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlops.evaluation.metrics import validate_prediction
from mlops.types import Task

__all__ = ["plot_evaluation", "plot_learning_curves"]

_DPI = 100


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=_DPI)
    finally:
        plt.close(fig)
    return path


def plot_evaluation(
    task: Task | str,
    y_true: Any,
    prediction: Any,
    path: Path,
    *,
    class_labels: Sequence[Any] | None = None,
) -> Path:
    """Draw the task's evaluation plot and write it as a PNG.

    Regression: predicted vs actual with the identity line, and the residual histogram.
    Binary: ROC curve (AUC in the legend) and precision-recall curve.
    Multiclass: the confusion matrix of counts.

    Args:
        task: the kind of problem.
        y_true: the true targets of the test split.
        prediction: as for :func:`mlops.evaluation.metrics.compute_metrics`.
        path: the PNG file to write; its folder is created.
        class_labels: display names of the classes ``0 .. k-1`` (classification only).

    Returns:
        ``path``.

    Raises:
        ValueError: on mismatched inputs or when ``class_labels`` has the wrong length.
    """
    task = Task(task)
    y, p = validate_prediction(task, y_true, prediction)
    plt = _pyplot()
    if task is Task.REGRESSION:
        fig = _regression_figure(plt, y, p)
    elif task is Task.BINARY:
        _check_class_labels(class_labels, 2)
        fig = _binary_figure(plt, y, p, class_labels)
    else:
        _check_class_labels(class_labels, p.shape[1])
        fig = _confusion_figure(plt, y, p, class_labels)
    return _save(fig, path)


def _check_class_labels(class_labels: Sequence[Any] | None, k: int) -> None:
    if class_labels is not None and len(class_labels) != k:
        raise ValueError(
            f"class_labels has {len(class_labels)} names but the prediction has {k} classes; "
            f"pass one name per class 0..{k - 1}"
        )


def _regression_figure(plt: Any, y: np.ndarray, p: np.ndarray) -> Any:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax1.scatter(y, p, s=8, alpha=0.5, edgecolors="none")
    finite = np.concatenate([y[np.isfinite(y)], p[np.isfinite(p)]])
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    ax1.plot([lo, hi], [lo, hi], color="black", linestyle="--", linewidth=1, label="y = x")
    ax1.set_xlabel("actual")
    ax1.set_ylabel("predicted")
    ax1.set_title("Predicted vs actual")
    ax1.legend(loc="upper left")
    residuals = p - y
    residuals = residuals[np.isfinite(residuals)]
    ax2.hist(residuals, bins=min(50, max(5, residuals.size // 5)), color="tab:blue", alpha=0.8)
    ax2.axvline(0.0, color="black", linestyle="--", linewidth=1)
    ax2.set_xlabel("residual (predicted - actual)")
    ax2.set_ylabel("count")
    ax2.set_title("Residuals")
    return fig


def _binary_figure(
    plt: Any, y: np.ndarray, p: np.ndarray, class_labels: Sequence[Any] | None
) -> Any:
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    positive = class_labels[1] if class_labels is not None else 1
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, p)
        ax1.plot(fpr, tpr, label=f"ROC (AUC = {auc(fpr, tpr):.3f})")
        precision, recall, _ = precision_recall_curve(y, p)
        ax2.plot(recall, precision, label=f"PR (positive: {positive})")
        ax2.axhline(y.mean(), color="grey", linestyle="--", linewidth=1, label="base rate")
        ax2.legend(loc="lower left")
    else:
        for ax in (ax1, ax2):
            ax.text(
                0.5,
                0.5,
                "undefined: the test split has one class only",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
    ax1.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
    ax1.set_xlabel("false positive rate")
    ax1.set_ylabel("true positive rate")
    ax1.set_title("ROC curve")
    ax1.legend(loc="lower right")
    ax2.set_xlabel("recall")
    ax2.set_ylabel("precision")
    ax2.set_title("Precision-recall curve")
    for ax in (ax1, ax2):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
    return fig


def _confusion_figure(
    plt: Any, y: np.ndarray, p: np.ndarray, class_labels: Sequence[Any] | None
) -> Any:
    from sklearn.metrics import confusion_matrix

    k = p.shape[1]
    names = [str(c) for c in (class_labels if class_labels is not None else range(k))]
    matrix = confusion_matrix(y, p.argmax(axis=1), labels=list(range(k)))
    size = max(4.5, 0.6 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(k), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("Confusion matrix (counts)")
    if k <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if matrix[i, j] > threshold else "black",
                )
    return fig


def plot_learning_curves(
    evals_result: Mapping[str, Mapping[str, Sequence[float]]],
    path: Path,
    *,
    best_iteration: int | None = None,
) -> Path:
    """Plot training curves in XGBoost's ``evals_result`` format, one subplot per metric.

    Args:
        evals_result: ``{"train": {"rmse": [...]}, "validation": {"rmse": [...]}}``.
        path: the PNG file to write; its folder is created.
        best_iteration: the early-stopping iteration to mark, if any.

    Returns:
        ``path``.

    Raises:
        ValueError: when ``evals_result`` holds no curve.
    """
    metrics: list[str] = []
    for curves in evals_result.values():
        for metric, values in curves.items():
            if len(values) and metric not in metrics:
                metrics.append(metric)
    if not metrics:
        raise ValueError(
            "evals_result holds no curve; pass the model's evals_result() after training "
            "with an eval_set, e.g. {'validation': {'rmse': [...]}}"
        )
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for dataset, curves in evals_result.items():
            values = list(curves.get(metric, []))
            if values:
                ax.plot(range(len(values)), values, label=dataset)
        if best_iteration is not None:
            ax.axvline(
                best_iteration,
                color="black",
                linestyle="--",
                linewidth=1,
                label=f"best iteration {best_iteration}",
            )
        ax.set_xlabel("boosting round")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.legend()
    return _save(fig, path)
