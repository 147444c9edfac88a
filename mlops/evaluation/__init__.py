"""Evaluation of a trained model: metrics, the quality gate and plots.

Plots import matplotlib only when called.
"""

from __future__ import annotations

from mlops.evaluation.gate import GateCheck, GateResult, check_gate
from mlops.evaluation.metrics import (
    DEFAULT_THRESHOLDS,
    METRIC_NAMES,
    PRIMARY_METRIC,
    compute_metrics,
    metric_names,
    validate_prediction,
)
from mlops.evaluation.plots import plot_evaluation, plot_learning_curves

__all__ = [
    "DEFAULT_THRESHOLDS",
    "METRIC_NAMES",
    "PRIMARY_METRIC",
    "GateCheck",
    "GateResult",
    "check_gate",
    "compute_metrics",
    "metric_names",
    "plot_evaluation",
    "plot_learning_curves",
    "validate_prediction",
]
