"""Outliers of new data against a training baseline: values far beyond the observed range.

A value is an outlier when it lies outside the baseline's observed ``[min, max]`` widened on
each side by ``margin`` times the range (``|max|`` for a constant column), the rule of the
batch-inference check (``batch.outlier_margin``). Missing values are not outliers; infinite
ones are. A row is an outlier row when any of its values is. :class:`OutlierCounter` adds up
chunk after chunk, so a table larger than memory is judged in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["OutlierCounter", "outlier_bounds"]


def outlier_bounds(
    statistics: dict[str, Any], features: Iterable[str], margin: float
) -> dict[str, tuple[float, float]]:
    """The allowed ``(low, high)`` of each numeric feature that the statistics describe.

    Args:
        statistics: a Model Monitor-style ``statistics.json`` (see
            :func:`mlops.monitoring.baseline.build_statistics`).
        features: the columns to bound; others in the statistics are ignored.
        margin: how far beyond ``[min, max]`` a value may lie, as a fraction of the range.

    Returns:
        Bounds by feature; features without a numeric min and max get none (never outliers).
    """
    wanted = set(features)
    bounds: dict[str, tuple[float, float]] = {}
    for feature in statistics.get("features", []):
        name = feature.get("name")
        block = feature.get("numerical_statistics") or {}
        low, high = block.get("min"), block.get("max")
        if name not in wanted or low is None or high is None:
            continue
        low, high = float(low), float(high)
        span = high - low if high > low else abs(high)
        bounds[name] = (low - margin * span, high + margin * span)
    return bounds


@dataclass
class OutlierCounter:
    """Counts outlier rows over the chunks of one table.

    Attributes:
        bounds: allowed ``(low, high)`` by column, from :func:`outlier_bounds`.
        rows: rows seen so far.
        outlier_rows: rows with at least one value outside its bounds.
        by_column: outlier values per column.
    """

    bounds: dict[str, tuple[float, float]]
    rows: int = 0
    outlier_rows: int = 0
    by_column: dict[str, int] = field(default_factory=dict)

    def add(self, frame: pd.DataFrame) -> np.ndarray:
        """Count the outliers of ``frame`` (numeric columns); return its outlier-row mask."""
        mask = np.zeros(len(frame), dtype=bool)
        for name, (low, high) in self.bounds.items():
            if name not in frame.columns:
                continue
            values = np.asarray(frame[name].to_numpy(dtype="float64", na_value=np.nan))
            with np.errstate(invalid="ignore"):
                outside = (values < low) | (values > high)  # NaN compares False: not counted
            count = int(outside.sum())
            if count:
                self.by_column[name] = self.by_column.get(name, 0) + count
                mask |= outside
        self.rows += len(frame)
        self.outlier_rows += int(mask.sum())
        return mask

    @property
    def share(self) -> float:
        """Share of rows that hold an outlier (0 when no rows were seen)."""
        return self.outlier_rows / self.rows if self.rows else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: counts, share and the bounds used."""
        return {
            "rows": self.rows,
            "outlier_rows": self.outlier_rows,
            "outlier_share": self.share,
            "by_column": dict(sorted(self.by_column.items())),
            "bounds": {k: [lo, hi] for k, (lo, hi) in sorted(self.bounds.items())},
        }
