"""The per-column drift tests of :func:`mlops.monitoring.drift.detect_drift`.

Evidently 0.7's default tests (``ks``, ``chisquare``, ``z``, ``wasserstein``,
``jensenshannon``) with their thresholds and directions, computed on summaries of a column
(sorted finite values, or value counts) so a reference is prepared once; the choice of test per
column is the table in :mod:`mlops.monitoring.drift`'s docstring. :class:`ColumnDrift` is one
column's decision.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from mlops.errors import DataError

__all__ = [
    "METHOD_DISPLAY_NAMES",
    "REFERENCE_SIZE_LIMIT",
    "THRESHOLDS",
    "CatSummary",
    "ColumnDrift",
    "Kind",
    "Method",
    "NumSummary",
    "categorical_drift",
    "categorical_summary",
    "numeric_summary",
    "numerical_drift",
]

#: Above this many non-null reference values the distance tests replace the p-value tests.
REFERENCE_SIZE_LIMIT = 1000
#: Default thresholds of Evidently's stat tests.
THRESHOLDS: dict[str, float] = {
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
}
#: Evidently's display names (``ValueDrift``'s ``method`` in a report).
METHOD_DISPLAY_NAMES: dict[str, str] = {
    "ks": "K-S p_value",
    "chisquare": "chi-square p_value",
    "z": "Z-test p_value",
    "wasserstein": "Wasserstein distance (normed)",
    "jensenshannon": "Jensen-Shannon distance",
}
_STD_FLOOR = 0.001

Kind = Literal["numerical", "categorical"]
Method = Literal["ks", "chisquare", "z", "wasserstein", "jensenshannon"]


# ---------------------------------------------------------------------------------------------
# one column's decision


def _json_number(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class ColumnDrift:
    """The drift decision for one column.

    ``score`` is a p-value for ``ks``/``chisquare``/``z`` (drift when small) and a distance for
    ``wasserstein``/``jensenshannon`` (drift when large); ``drifted`` applies Evidently's
    direction (``ks``: ``p <= threshold``; ``chisquare``, ``z``: ``p < threshold``; distances:
    ``score >= threshold``). ``n_ref``/``n_cur`` count non-missing finite values and
    ``n_unique`` the distinct values of both sides together.
    """

    column: str
    kind: Kind
    method: Method
    score: float
    threshold: float
    drifted: bool
    n_ref: int
    n_cur: int
    n_unique: int

    @property
    def method_name(self) -> str:
        """Evidently's display name of the method, e.g. ``"Wasserstein distance (normed)"``."""
        return METHOD_DISPLAY_NAMES[self.method]

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind,
            "method": self.method,
            "method_name": self.method_name,
            "score": _json_number(self.score),
            "threshold": float(self.threshold),
            "drifted": bool(self.drifted),
            "n_ref": int(self.n_ref),
            "n_cur": int(self.n_cur),
            "n_unique": int(self.n_unique),
        }


# ---------------------------------------------------------------------------------------------
# per-column summaries


@dataclass(frozen=True)
class NumSummary:
    """Finite values of a numerical column, sorted; its distinct values; the population std
    (reference side only)."""

    sorted: np.ndarray
    uniques: np.ndarray
    std: float  # population std (ddof=0), as ``np.std`` on the pandas Series in Evidently

    @property
    def n(self) -> int:
        return int(self.sorted.size)

    def counts_of(self, keys: np.ndarray) -> np.ndarray:
        left = np.searchsorted(self.sorted, keys, side="left")
        right = np.searchsorted(self.sorted, keys, side="right")
        return right - left


@dataclass(frozen=True)
class CatSummary:
    """Value counts of a categorical column (missing and ±inf dropped, no zero counts)."""

    counts: pd.Series

    @property
    def n(self) -> int:
        return int(self.counts.sum())


def numeric_summary(
    series: pd.Series, *, column: str, side: str, with_std: bool = False
) -> NumSummary:
    """The summary of a numerical column (``with_std``: the reference side's std too)."""
    if not pd.api.types.is_numeric_dtype(series.dtype):
        raise DataError(
            f"column {column!r} in the {side} data has dtype {series.dtype}, but it is listed as "
            "numerical; convert it to numbers or list it in `categorical`"
        )
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    if not finite.all():
        values = values[finite]
    ordered = np.sort(values)
    if ordered.size:
        first = np.empty(ordered.size, dtype=bool)
        first[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
        uniques = ordered[first]
    else:
        uniques = ordered
    # Evidently: np.std(Series) is the population std of the unsorted cleaned values
    std = float(np.std(values)) if with_std and values.size else float("nan")
    return NumSummary(sorted=ordered, uniques=uniques, std=std)


def _is_infinite(key: Any) -> bool:
    return isinstance(key, float | np.floating) and math.isinf(key)


def categorical_summary(series: pd.Series) -> CatSummary:
    """The value counts of a categorical column."""
    counts = series.value_counts(dropna=True, sort=False)
    if isinstance(counts.index, pd.CategoricalIndex):
        counts.index = counts.index.astype(object)
        counts = counts[counts > 0]
    # Evidently replaces ±inf with NaN before dropping missing values.
    if pd.api.types.is_float_dtype(counts.index.dtype):
        counts = counts[np.isfinite(counts.index.to_numpy(dtype=np.float64))]
    elif counts.index.dtype == object:
        infinite = [_is_infinite(k) for k in counts.index]
        if any(infinite):
            counts = counts[~np.asarray(infinite)]
    return CatSummary(counts=counts.astype(np.int64))


def _aligned_counts(ref: CatSummary, cur: CatSummary) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The union of keys (reference keys first) and both sides' counts over it."""
    extra = cur.counts.index[~cur.counts.index.isin(ref.counts.index)]
    keys = list(ref.counts.index) + list(extra)
    ref_counts = np.concatenate([ref.counts.to_numpy(), np.zeros(len(extra), dtype=np.int64)])
    cur_counts = cur.counts.reindex(pd.Index(keys, dtype=object), fill_value=0).to_numpy()
    return keys, ref_counts, cur_counts


# ---------------------------------------------------------------------------------------------
# the tests (same formulas as Evidently's stattests)


def _chisquare(ref_counts: np.ndarray, cur_counts: np.ndarray, n_ref: int, n_cur: int) -> float:
    k_norm = n_cur / n_ref
    f_exp = ref_counts * k_norm
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.chisquare(cur_counts, f_exp)[1])


def _z_test(keys: list[Any], ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    ref_present = [k for k, c in zip(keys, ref_counts, strict=True) if c > 0]
    cur_present = [k for k, c in zip(keys, cur_counts, strict=True) if c > 0]
    if len(ref_present) == 1 and len(cur_present) == 1 and ref_present[0] == cur_present[0]:
        return 1.0
    first = sorted(keys)[0]
    at = keys.index(first)
    n1 = int(ref_counts.sum())
    n2 = int(cur_counts.sum())
    # the share of values that are NOT the smallest key, as in Evidently's indicator
    p1 = float(n1 - int(ref_counts[at])) / n1
    p2 = float(n2 - int(cur_counts[at])) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - stats.norm.cdf(np.abs(z))))


def _jensenshannon(ref_counts: np.ndarray, cur_counts: np.ndarray, n_ref: int, n_cur: int) -> float:
    return float(distance.jensenshannon(ref_counts / n_ref, cur_counts / n_cur, None))


def _wasserstein_sorted(u: np.ndarray, v: np.ndarray) -> tuple[float, int]:
    """scipy's ``wasserstein_distance(u, v)`` for sorted ``u`` and ``v``, and the number of
    distinct values of both.

    scipy (``_stats_py._cdf_distance``) merges the values, takes their gaps and, at each merged
    value, both empirical CDFs by ``searchsorted(..., 'right')``, then sums
    ``|U - V| * gap`` with ``vecdot``. Here a stable merge of the two sorted arrays tells which
    side each merged value came from and a running count gives the same CDF values at the
    last of equal values, the only places where the gap is not 0; where it is 0 the term is 0
    either way, so the sum adds the same terms and the result is the same number.
    """
    merged = np.concatenate((u, v))
    order = np.argsort(merged, kind="stable")  # two sorted runs: a linear merge
    merged = merged[order]
    deltas = np.diff(merged)
    n_unique = int(np.count_nonzero(deltas)) + 1
    from_u = order[:-1] < u.size
    del order
    u_count = np.cumsum(from_u)
    del from_u
    v_count = np.arange(1, merged.size, dtype=u_count.dtype)
    del merged
    np.subtract(v_count, u_count, out=v_count)
    u_cdf = u_count / u.size
    del u_count
    v_cdf = v_count / v.size
    del v_count
    np.subtract(u_cdf, v_cdf, out=u_cdf)
    del v_cdf
    np.abs(u_cdf, out=u_cdf)
    if hasattr(np, "vecdot"):
        value = float(np.vecdot(u_cdf, deltas))
    else:  # numpy < 2, like scipy's np_vecdot
        value = float(np.sum(u_cdf * deltas))
    return value, n_unique


def _union_size(a: np.ndarray, b: np.ndarray) -> int:
    """Number of distinct values in two sorted arrays of distinct values."""
    if a.size == 0 or b.size == 0:
        return int(a.size + b.size)
    small, large = (a, b) if a.size <= b.size else (b, a)
    at = np.searchsorted(small, large)
    np.minimum(at, small.size - 1, out=at)
    common = int(np.count_nonzero(small[at] == large))
    return int(a.size + b.size - common)


def _counts_test(
    keys: list[Any],
    ref_counts: np.ndarray,
    cur_counts: np.ndarray,
    n_ref: int,
    n_cur: int,
    n_unique: int,
) -> tuple[Method, float]:
    """The test of a column with few values, on both sides' counts of each value:
    Jensen-Shannon above :data:`REFERENCE_SIZE_LIMIT`, else chi-square (more than two
    values) or the z test."""
    if n_ref > REFERENCE_SIZE_LIMIT:
        return "jensenshannon", _jensenshannon(ref_counts, cur_counts, n_ref, n_cur)
    if n_unique > 2:
        return "chisquare", _chisquare(ref_counts, cur_counts, n_ref, n_cur)
    return "z", _z_test(keys, ref_counts, cur_counts)


def numerical_drift(column: str, ref: NumSummary, cur: NumSummary) -> ColumnDrift:
    """Evidently's default test of a numerical column, and its decision."""
    n_ref, n_cur = ref.n, cur.n
    if n_ref > REFERENCE_SIZE_LIMIT and ref.uniques.size > 5:
        method: Method = "wasserstein"
        distance_, n_unique = _wasserstein_sorted(ref.sorted, cur.sorted)
        score = distance_ / max(ref.std, _STD_FLOOR)
    else:
        n_unique = _union_size(ref.uniques, cur.uniques)
        if n_unique > 5:
            if n_ref > REFERENCE_SIZE_LIMIT:
                method = "wasserstein"
                distance_, _ = _wasserstein_sorted(ref.sorted, cur.sorted)
                score = distance_ / max(ref.std, _STD_FLOOR)
            else:
                method = "ks"
                score = float(stats.ks_2samp(ref.sorted, cur.sorted)[1])
        else:
            keys_arr = np.union1d(ref.uniques, cur.uniques)
            ref_counts = ref.counts_of(keys_arr)
            cur_counts = cur.counts_of(keys_arr)
            keys = keys_arr.tolist()
            method, score = _counts_test(keys, ref_counts, cur_counts, n_ref, n_cur, n_unique)
    return _decide(column, "numerical", method, score, n_ref, n_cur, n_unique)


def categorical_drift(column: str, ref: CatSummary, cur: CatSummary) -> ColumnDrift:
    """Evidently's default test of a categorical column, and its decision."""
    n_ref, n_cur = ref.n, cur.n
    keys, ref_counts, cur_counts = _aligned_counts(ref, cur)
    n_unique = len(keys)
    try:  # only the z test orders the values
        method, score = _counts_test(keys, ref_counts, cur_counts, n_ref, n_cur, n_unique)
    except TypeError as exc:
        raise DataError(
            f"column {column!r} mixes values that cannot be ordered ({keys!r}); "
            "convert it to one type (e.g. `.astype(str)`)"
        ) from exc
    return _decide(column, "categorical", method, score, n_ref, n_cur, n_unique)


def _decide(
    column: str, kind: Kind, method: Method, score: float, n_ref: int, n_cur: int, n_unique: int
) -> ColumnDrift:
    threshold = THRESHOLDS[method]
    if method == "ks":
        drifted = score <= threshold
    elif method in ("chisquare", "z"):
        drifted = score < threshold
    else:
        drifted = score >= threshold
    return ColumnDrift(
        column=column,
        kind=kind,
        method=method,
        score=float(score),
        threshold=threshold,
        drifted=bool(drifted),
        n_ref=n_ref,
        n_cur=n_cur,
        n_unique=n_unique,
    )

