"""Accuracy decay: is a model's live metric worse than its test metric by more than allowed?"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from mlops.evaluation.metrics import PRIMARY_METRIC
from mlops.types import Task

__all__ = ["AccuracyCheck", "check_decay"]


@dataclass(frozen=True)
class AccuracyCheck:
    """The primary metric on live labelled traffic against the same metric on the test split.

    Attributes:
        metric: the task's primary metric (rmse, auc or accuracy).
        live: its value on the labelled window.
        test: its value on the version's test split (None when the run lacks it).
        relative_drop: how much worse live is than test, as a fraction of test (positive is
            worse, whatever the metric's direction).
        max_drop: the allowed fraction.
        dropped: whether ``relative_drop`` exceeds ``max_drop``.
    """

    metric: str
    live: float
    test: float | None
    relative_drop: float | None
    max_drop: float
    dropped: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data."""
        return asdict(self)


def check_decay(
    task: Task | str, live: dict[str, float], test: dict[str, float], max_drop: float
) -> AccuracyCheck:
    """Compare the primary metric of ``live`` with ``test`` (keys without a ``test_`` prefix).

    A non-finite live value (e.g. AUC on one class only) or a missing test value decides
    nothing (``dropped`` is False): the check needs both numbers.
    """
    metric, direction = PRIMARY_METRIC[Task(task)]
    value = float(live.get(metric, math.nan))
    base = test.get(metric)
    if base is None or not math.isfinite(value) or not math.isfinite(float(base)):
        return AccuracyCheck(metric, value, base, None, max_drop, False)
    base = float(base)
    worse = (value - base) if direction == "min" else (base - value)
    relative = worse / abs(base) if base != 0 else (math.inf if worse > 0 else 0.0)
    return AccuracyCheck(metric, value, base, relative, max_drop, relative > max_drop)
