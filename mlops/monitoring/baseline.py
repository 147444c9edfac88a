"""A training-time data baseline in the spirit of SageMaker Model Monitor.

:func:`build_statistics` and :func:`build_constraints` produce plain-data documents shaped like
Model Monitor's ``statistics.json`` and ``constraints.json``; :func:`check_constraints` checks
a new table against the constraints and returns violations shaped like
``constraint_violations.json``. Everything is JSON-serializable without NaN: missing numbers
are ``None``. Non-finite numbers (``inf``) count as missing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "COMPLETENESS_TOLERANCE",
    "HISTOGRAM_BINS",
    "RANGE_TOLERANCE",
    "TOP_VALUES",
    "Violation",
    "build_constraints",
    "build_statistics",
    "check_constraints",
    "reference_sample",
    "violations_report",
]

HISTOGRAM_BINS = 10
TOP_VALUES = 10
RANGE_TOLERANCE = 0.1
COMPLETENESS_TOLERANCE = 0.01
_QUANTILES = {
    "p01": 0.01,
    "p05": 0.05,
    "p25": 0.25,
    "p50": 0.5,
    "p75": 0.75,
    "p95": 0.95,
    "p99": 0.99,
}
_NUMERIC_TYPES = ("Integral", "Fractional")


def _inferred_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_integer_dtype(series):
        return "Integral"
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_complex_dtype(series):
        return "Fractional"
    return "String"


def _numeric_values(series: pd.Series) -> np.ndarray:
    """All values as floats with missing and non-finite ones as NaN."""
    values = np.array(series.to_numpy(dtype=float, na_value=np.nan), dtype=float, copy=True)
    values[~np.isfinite(values)] = np.nan
    return values


def _number(x: Any) -> float | int | None:
    """A plain Python number, or None for missing/non-finite."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _numerical_statistics(series: pd.Series) -> dict[str, Any]:
    values = _numeric_values(series)
    present = values[~np.isnan(values)]
    common = {"num_present": int(present.size), "num_missing": int(values.size - present.size)}
    if present.size == 0:
        return {
            "common": common,
            "mean": None,
            "sum": None,
            "std_dev": None,
            "min": None,
            "max": None,
            "quantiles": {k: None for k in _QUANTILES},
            "distribution": {"histogram": {"bin_edges": [], "counts": []}},
        }
    quantiles = np.quantile(present, list(_QUANTILES.values()))
    counts, edges = np.histogram(present, bins=HISTOGRAM_BINS)
    return {
        "common": common,
        "mean": _number(present.mean()),
        "sum": _number(present.sum()),
        "std_dev": _number(present.std()),
        "min": _number(present.min()),
        "max": _number(present.max()),
        "quantiles": {k: _number(q) for k, q in zip(_QUANTILES, quantiles, strict=True)},
        "distribution": {
            "histogram": {
                "bin_edges": [_number(e) for e in edges],
                "counts": [int(c) for c in counts],
            }
        },
    }


def _string_statistics(series: pd.Series) -> dict[str, Any]:
    present = series.dropna().astype(str)
    counts = present.value_counts()
    common = {"num_present": int(present.size), "num_missing": int(series.size - present.size)}
    return {
        "common": common,
        "distinct_count": int(counts.size),
        "top_values": {str(k): int(v) for k, v in counts.head(TOP_VALUES).items()},
    }


def build_statistics(frame: pd.DataFrame) -> dict[str, Any]:
    """Describe each column of ``frame`` like Model Monitor's ``statistics.json``.

    Numeric columns get ``numerical_statistics`` (counts, mean, sum, population std_dev,
    min, max, quantiles p01..p99 and a 10-bin histogram); other columns get
    ``string_statistics`` (counts, distinct_count and the 10 most frequent values).
    Integer and boolean columns are ``Integral``, float columns ``Fractional``.

    Args:
        frame: the reference table (typically the training features).

    Returns:
        ``{"version": 0.0, "dataset": {"item_count": n}, "features": [...]}``.
    """
    features: list[dict[str, Any]] = []
    for name in frame.columns:
        series = frame[name]
        inferred = _inferred_type(series)
        feature: dict[str, Any] = {"name": str(name), "inferred_type": inferred}
        if inferred in _NUMERIC_TYPES:
            feature["numerical_statistics"] = _numerical_statistics(series)
        else:
            feature["string_statistics"] = _string_statistics(series)
        features.append(feature)
    return {"version": 0.0, "dataset": {"item_count": int(len(frame))}, "features": features}


def build_constraints(
    frame: pd.DataFrame, statistics: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Derive Model Monitor-style constraints from the baseline statistics.

    Numeric features get ``num_constraints``: ``is_non_negative`` (observed min >= 0) and
    ``min``/``max`` widened by ``range_tolerance * (max - min)`` (by
    ``range_tolerance * |max|`` for a constant column).

    Args:
        frame: the reference table; only used when ``statistics`` is not given.
        statistics: the result of :func:`build_statistics` on ``frame``, to avoid recomputing.

    Returns:
        ``{"version": 0.0, "features": [...], "monitoring_config": {...}}``.

    Raises:
        ValueError: when ``statistics`` is not shaped like :func:`build_statistics`' output.
    """
    stats = statistics if statistics is not None else build_statistics(frame)
    if not isinstance(stats, dict) or not isinstance(stats.get("features"), list):
        raise ValueError(
            "statistics has no 'features' list; pass the result of build_statistics(frame) "
            "or None to compute it"
        )
    features: list[dict[str, Any]] = []
    for feature in stats["features"]:
        name, inferred = feature["name"], feature["inferred_type"]
        block = feature.get("numerical_statistics") or feature.get("string_statistics") or {}
        common = block.get("common", {})
        present, missing = common.get("num_present", 0), common.get("num_missing", 0)
        total = present + missing
        item: dict[str, Any] = {
            "name": name,
            "inferred_type": inferred,
            "completeness": float(present / total) if total else 1.0,
        }
        if inferred in _NUMERIC_TYPES:
            lo, hi = block.get("min"), block.get("max")
            if lo is None or hi is None:
                item["num_constraints"] = {"is_non_negative": False, "min": None, "max": None}
            else:
                span = (hi - lo) if hi > lo else abs(hi)
                pad = RANGE_TOLERANCE * span
                item["num_constraints"] = {
                    "is_non_negative": bool(lo >= 0),
                    "min": _number(lo - pad),
                    "max": _number(hi + pad),
                }
        features.append(item)
    return {
        "version": 0.0,
        "features": features,
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "distribution_constraints": {
                "perform_comparison": "Enabled",
                "comparison_threshold": 0.1,
                "comparison_method": "Robust",
            },
            "range_tolerance": RANGE_TOLERANCE,
        },
    }


@dataclass(frozen=True)
class Violation:
    """One broken constraint, as in Model Monitor's ``constraint_violations.json``.

    Attributes:
        feature_name: the column concerned.
        constraint_check_type: ``missing_column_check``, ``extra_column_check``,
            ``data_type_check``, ``completeness_check``, ``range_check`` or
            ``non_negative_check``.
        description: a sentence naming the feature, the observed value and the bound.
    """

    feature_name: str
    constraint_check_type: str
    description: str

    def to_dict(self) -> dict[str, str]:
        """Plain JSON-serializable data."""
        return asdict(self)


def violations_report(violations: list[Violation]) -> dict[str, Any]:
    """The ``{"violations": [...]}`` document of ``constraint_violations.json``."""
    return {"violations": [v.to_dict() for v in violations]}


def _as_numeric(series: pd.Series) -> np.ndarray | None:
    """Numeric values of ``series`` (NaN for missing), or None if it is not numeric."""
    if _inferred_type(series) in _NUMERIC_TYPES:
        return _numeric_values(series)
    if pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series):
        converted = pd.to_numeric(series, errors="coerce")
        if converted.notna().sum() == series.notna().sum():
            return _numeric_values(converted)
    return None


def check_constraints(
    frame: pd.DataFrame,
    constraints: dict[str, Any],
    *,
    completeness_tolerance: float = COMPLETENESS_TOLERANCE,
) -> list[Violation]:
    """Check ``frame`` against constraints from :func:`build_constraints`.

    Integral and Fractional are compatible with each other; a non-numeric column where a
    numeric one is expected is a ``data_type_check`` violation (strings that all parse as
    numbers are accepted).

    Args:
        frame: the new table, e.g. a batch of inference inputs.
        constraints: the baseline's constraints.
        completeness_tolerance: how far (absolute fraction) completeness may drop below the
            baseline's before it is a violation.

    Returns:
        The violations, empty when the table conforms.

    Raises:
        ValueError: when ``constraints`` has no ``features`` list.
    """
    if not isinstance(constraints, dict) or not isinstance(constraints.get("features"), list):
        raise ValueError(
            "constraints has no 'features' list; pass the result of build_constraints(frame)"
        )
    violations: list[Violation] = []
    expected = {f["name"]: f for f in constraints["features"]}
    columns = {str(c): c for c in frame.columns}
    for name, feature in expected.items():
        if name not in columns:
            violations.append(
                Violation(
                    name,
                    "missing_column_check",
                    f"feature '{name}' is in the baseline but missing from the data; "
                    "send every baseline column",
                )
            )
            continue
        violations.extend(_check_feature(frame[columns[name]], feature, completeness_tolerance))
    for name in columns:
        if name not in expected:
            violations.append(
                Violation(
                    name,
                    "extra_column_check",
                    f"column '{name}' is not in the baseline; drop it or rebuild the baseline",
                )
            )
    return violations


def _check_feature(series: pd.Series, feature: dict[str, Any], tolerance: float) -> list[Violation]:
    name, inferred = feature["name"], feature["inferred_type"]
    out: list[Violation] = []
    values: np.ndarray | None = None
    if inferred in _NUMERIC_TYPES:
        values = _as_numeric(series)
        if values is None:
            description = (
                f"feature '{name}' should be {inferred} (numeric) but has dtype {series.dtype}"
            )
            if series.notna().any():
                description += f" with values such as {series.dropna().iloc[0]!r}"
            out.append(Violation(name, "data_type_check", description))
            present = int(series.notna().sum())
        else:
            present = int((~np.isnan(values)).sum())
    else:
        present = int(series.notna().sum())
    total = len(series)
    if total == 0:
        return out
    completeness = present / total
    baseline = feature.get("completeness")
    if baseline is not None and completeness < baseline - tolerance:
        out.append(
            Violation(
                name,
                "completeness_check",
                f"feature '{name}' is {completeness:.2%} complete ({total - present} of {total} "
                f"missing), below the baseline's {baseline:.2%} (tolerance {tolerance:.2%})",
            )
        )
    bounds = feature.get("num_constraints")
    if values is None or not bounds:
        return out
    present_values = values[~np.isnan(values)]
    if present_values.size == 0:
        return out
    lo_seen, hi_seen = float(present_values.min()), float(present_values.max())
    lo, hi = bounds.get("min"), bounds.get("max")
    if lo is not None and hi is not None:
        outside = int(((present_values < lo) | (present_values > hi)).sum())
        if outside:
            out.append(
                Violation(
                    name,
                    "range_check",
                    f"feature '{name}' has {outside} of {present_values.size} values outside the "
                    f"baseline range [{lo:.6g}, {hi:.6g}] (observed min {lo_seen:.6g}, "
                    f"max {hi_seen:.6g})",
                )
            )
    if bounds.get("is_non_negative") and lo_seen < 0:
        negatives = int((present_values < 0).sum())
        out.append(
            Violation(
                name,
                "non_negative_check",
                f"feature '{name}' was non-negative in the baseline but has {negatives} negative "
                f"values (observed min {lo_seen:.6g}, bound >= 0)",
            )
        )
    return out


def reference_sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """A seeded sample of ``rows`` rows without replacement (all rows if there are fewer).

    Args:
        frame: the table to sample.
        rows: how many rows to keep; at least 1.
        seed: the random seed, so that the same inputs give the same sample.

    Raises:
        ValueError: when ``rows`` is below 1.
    """
    if rows < 1:
        raise ValueError(f"rows is {rows}; ask for at least 1 row (baseline.sample_rows)")
    if len(frame) <= rows:
        return frame.copy()
    return frame.sample(n=rows, replace=False, random_state=seed)
