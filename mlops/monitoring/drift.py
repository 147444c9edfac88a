"""Per-column data drift with exactly the decisions of Evidently's ``DataDriftPreset`` defaults.

:func:`detect_drift` compares a current table with a reference table column by column and
decides, for each column and for the dataset, whether it drifted. The choice of test, the
thresholds, the score formulas and the comparison directions are those of Evidently 0.7's
default drift detection (``evidently/legacy/calculations/stattests/registry.py::
_get_default_stattest`` and ``data_drift.py::get_one_column_drift``):

=====================  =======================  =======================
column                 non-null reference ≤1000  non-null reference >1000
=====================  =======================  =======================
numerical, ≤2 values   ``z`` p < 0.05           ``jensenshannon`` ≥ 0.1
numerical, 3–5 values  ``chisquare`` p < 0.05   ``jensenshannon`` ≥ 0.1
numerical, >5 values   ``ks`` p ≤ 0.05          ``wasserstein`` ≥ 0.1
categorical, ≤2        ``z`` p < 0.05           ``jensenshannon`` ≥ 0.1
categorical, >2        ``chisquare`` p < 0.05   ``jensenshannon`` ≥ 0.1
=====================  =======================  =======================

Missing values and ±inf are dropped from both sides first; "values" counts the distinct values
of reference and current together. ``wasserstein`` is scipy's 1-D Wasserstein distance divided
by ``max(population std of the reference, 0.001)``; ``jensenshannon`` is scipy's
Jensen-Shannon *distance* (natural log) of the value shares; ``chisquare`` compares current
counts with reference counts scaled to the current size (a value seen only in current gives
p = 0); ``z`` is the two-sided two-proportion z-test on "value == the smallest value" (p = 1
when both sides hold the same single value). The dataset drifts when the share of drifted
columns is ``>= drift_share``.

The work is vectorised: numerical columns are sorted once (the Wasserstein distance is
scipy's ``_cdf_distance`` algorithm on the sorted arrays, so the numbers are the same), value
counts come from hashing, and a :class:`ReferenceProfile` keeps the reference's sorted arrays
and counts so a monitor that checks many windows prepares the reference once.

One known difference: Evidently's dataset-level ``DriftedColumnsCount`` (the legacy
``DatasetDriftMetric``) drops ±inf from a side only when that side of the column also holds a
missing value, while its per-column ``ValueDrift`` always drops them. This module always drops
them, so its per-column results equal ``ValueDrift`` and its share counts those; the two agree
with Evidently's count whenever no column has ±inf without a missing value on the same side.

Where Evidently fails, so does this module: a column that is empty after dropping missing
values (in either table) raises :class:`~mlops.errors.DataError` unless ``on_empty="skip"``,
which leaves it out of the share and lists it in :attr:`DriftResult.skipped`. Text columns
(Evidently's domain-classifier drift) are out of scope: with inferred types they are skipped
and listed in :attr:`DriftResult.skipped`; pass them in ``categorical`` to test them as
categories instead.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from mlops.errors import DataError

__all__ = [
    "DEFAULT_DRIFT_SHARE",
    "METHOD_DISPLAY_NAMES",
    "REFERENCE_SIZE_LIMIT",
    "THRESHOLDS",
    "ColumnDrift",
    "DriftResult",
    "ReferenceProfile",
    "detect_drift",
    "infer_column_kind",
]

#: Above this many non-null reference values the distance tests replace the p-value tests.
REFERENCE_SIZE_LIMIT = 1000
#: Evidently's ``INTEGER_CARDINALITY_LIMIT``: an int column with at most this many values is
#: categorical.
INTEGER_CARDINALITY_LIMIT = 10
DEFAULT_DRIFT_SHARE = 0.5
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
_T = TypeVar("_T")
_R = TypeVar("_R")
Method = Literal["ks", "chisquare", "z", "wasserstein", "jensenshannon"]


# ---------------------------------------------------------------------------------------------
# results


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


@dataclass(frozen=True)
class DriftResult:
    """Per-column decisions and the dataset decision (``share >= drift_share``).

    ``columns`` keeps the order of the tested columns (numerical first, then categorical).
    ``skipped`` maps a column that was not tested to the reason; skipped columns do not count
    in ``share``.
    """

    columns: dict[str, ColumnDrift]
    count: int
    share: float
    drifted: bool
    drift_share: float
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    @property
    def drifted_columns(self) -> list[str]:
        """Names of the drifted columns, in column order."""
        return [name for name, col in self.columns.items() if col.drifted]

    @property
    def scores(self) -> dict[str, float]:
        """Column → drift score."""
        return {name: col.score for name, col in self.columns.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (non-finite scores become ``None``)."""
        return {
            "drifted": bool(self.drifted),
            "share": float(self.share),
            "count": int(self.count),
            "n_columns": self.n_columns,
            "drift_share": float(self.drift_share),
            "drifted_columns": self.drifted_columns,
            "columns": {name: col.to_dict() for name, col in self.columns.items()},
            "skipped": dict(self.skipped),
        }


# ---------------------------------------------------------------------------------------------
# column type inference (Evidently's ``infer_column_type``)


def infer_column_kind(series: pd.Series) -> Literal["numerical", "categorical", "text", "other"]:
    """Evidently 0.7's ``infer_column_type`` for one column.

    float → numerical; int → categorical with at most 10 distinct values, else numerical;
    strings → text when more than half of the non-missing values are distinct, else
    categorical; bool and category → categorical; anything else (datetimes, lists, all-missing
    objects) → other.
    """
    name = series.dtype.name
    if name.startswith("float"):
        return "numerical"
    if name.startswith("int"):
        return "categorical" if series.nunique() <= INTEGER_CARDINALITY_LIMIT else "numerical"
    if name in ("string", "str"):
        return "text" if series.nunique() > series.count() * 0.5 else "categorical"
    if name == "object":
        present = series.dropna()
        if present.count() == 0:
            return "other"
        if isinstance(present.iloc[0], str) and isinstance(present.iloc[-1], str):
            return "text" if series.nunique() > series.count() * 0.5 else "categorical"
        return "other"
    if name in ("bool", "category"):
        return "categorical"
    return "other"


def _resolve_kinds(
    frame: pd.DataFrame,
    numerical: Sequence[str] | None,
    categorical: Sequence[str] | None,
) -> tuple[list[str], list[str], dict[str, str]]:
    """Numerical and categorical columns, inferring whichever list is None like Evidently.

    As in Evidently's ``Dataset``, an explicit list is kept as given and only the columns named
    in neither list are inferred to fill the missing one.
    """
    num = list(numerical) if numerical is not None else None
    cat = list(categorical) if categorical is not None else None
    if num is not None and cat is not None:
        both = sorted(set(num) & set(cat))
        if both:
            raise DataError(
                f"columns {both} are listed as both numerical and categorical; "
                "name each column in one list only"
            )
        return num, cat, {}
    reserved = set(num or []) | set(cat or [])
    inferred_num: list[str] = []
    inferred_cat: list[str] = []
    skipped: dict[str, str] = {}
    for column in frame.columns:
        if column in reserved:
            continue
        kind = infer_column_kind(frame[column])
        if kind == "numerical":
            inferred_num.append(column)
        elif kind == "categorical":
            inferred_cat.append(column)
        elif kind == "text":
            skipped[column] = (
                "text column (more than half of its values are distinct): Evidently tests it "
                "with a text-content drift model, which is not computed here; pass it in "
                "`categorical` to test it as categories"
            )
        else:
            skipped[column] = (
                f"dtype {frame[column].dtype} is neither numerical nor categorical; "
                "Evidently's drift preset does not test it either"
            )
    if num is None:
        num = inferred_num
    else:
        skipped.update({c: "inferred numerical, but `numerical` was given" for c in inferred_num})
    if cat is None:
        cat = inferred_cat
    else:
        skipped.update(
            {c: "inferred categorical, but `categorical` was given" for c in inferred_cat}
        )
    return num, cat, skipped


# ---------------------------------------------------------------------------------------------
# per-column summaries


@dataclass(frozen=True)
class _NumSummary:
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
class _CatSummary:
    """Value counts of a categorical column (missing and ±inf dropped, no zero counts)."""

    counts: pd.Series

    @property
    def n(self) -> int:
        return int(self.counts.sum())


def _numeric_summary(
    series: pd.Series, *, column: str, side: str, with_std: bool = False
) -> _NumSummary:
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
    return _NumSummary(sorted=ordered, uniques=uniques, std=std)


def _is_infinite(key: Any) -> bool:
    return isinstance(key, float | np.floating) and math.isinf(key)


def _categorical_summary(series: pd.Series) -> _CatSummary:
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
    return _CatSummary(counts=counts.astype(np.int64))


def _aligned_counts(ref: _CatSummary, cur: _CatSummary) -> tuple[list[Any], np.ndarray, np.ndarray]:
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


def _numerical_drift(column: str, ref: _NumSummary, cur: _NumSummary) -> ColumnDrift:
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
            if n_ref > REFERENCE_SIZE_LIMIT:
                method = "jensenshannon"
                score = _jensenshannon(ref_counts, cur_counts, n_ref, n_cur)
            elif n_unique > 2:
                method = "chisquare"
                score = _chisquare(ref_counts, cur_counts, n_ref, n_cur)
            else:
                method = "z"
                score = _z_test(keys, ref_counts, cur_counts)
    return _decide(column, "numerical", method, score, n_ref, n_cur, n_unique)


def _categorical_drift(column: str, ref: _CatSummary, cur: _CatSummary) -> ColumnDrift:
    n_ref, n_cur = ref.n, cur.n
    keys, ref_counts, cur_counts = _aligned_counts(ref, cur)
    n_unique = len(keys)
    method: Method
    if n_ref > REFERENCE_SIZE_LIMIT:
        method = "jensenshannon"
        score = _jensenshannon(ref_counts, cur_counts, n_ref, n_cur)
    elif n_unique > 2:
        method = "chisquare"
        score = _chisquare(ref_counts, cur_counts, n_ref, n_cur)
    else:
        method = "z"
        try:
            score = _z_test(keys, ref_counts, cur_counts)
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


# ---------------------------------------------------------------------------------------------
# reference profile


class ReferenceProfile:
    """A reference table prepared once: sorted finite values of each numerical column and
    value counts of each categorical column.

    Pass it as ``reference`` to :func:`detect_drift` to check many current windows against the
    same reference without sorting it again. The original frame is not kept.
    """

    def __init__(
        self,
        numeric: dict[str, _NumSummary],
        categorical: dict[str, _CatSummary],
        n_rows: int,
        skipped: dict[str, str] | None = None,
    ) -> None:
        self._numeric = numeric
        self._categorical = categorical
        self.n_rows = n_rows
        self.skipped = dict(skipped or {})

    @property
    def numerical(self) -> list[str]:
        return list(self._numeric)

    @property
    def categorical(self) -> list[str]:
        return list(self._categorical)

    @classmethod
    def from_frame(
        cls,
        reference: pd.DataFrame,
        *,
        numerical: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        max_workers: int | None = None,
    ) -> ReferenceProfile:
        """Prepare ``reference``. Types not given are inferred from ``reference`` itself (with
        Evidently's rules; :func:`detect_drift` on two frames infers them from the current
        frame, as Evidently does)."""
        _check_frame(reference, "reference")
        num, cat, skipped = _resolve_kinds(reference, numerical, categorical)
        _check_columns(reference, num + cat, "reference")
        workers = _workers(max_workers, len(num) + len(cat), len(reference))
        numeric = _map(
            lambda c: _numeric_summary(c[1], column=c[0], side="reference", with_std=True),
            [(c, reference[c]) for c in num],
            workers,
        )
        counts = _map(_categorical_summary, [reference[c] for c in cat], workers)
        return cls(
            dict(zip(num, numeric, strict=True)),
            dict(zip(cat, counts, strict=True)),
            n_rows=len(reference),
            skipped=skipped,
        )

    def _select(
        self, numerical: Sequence[str] | None, categorical: Sequence[str] | None
    ) -> tuple[list[str], list[str]]:
        num = self.numerical if numerical is None else list(numerical)
        cat = self.categorical if categorical is None else list(categorical)
        for names, have, kind in (
            (num, self._numeric, "numerical"),
            (cat, self._categorical, "categorical"),
        ):
            missing = [c for c in names if c not in have]
            if missing:
                raise DataError(
                    f"columns {missing} are not {kind} columns of the reference profile "
                    f"(numerical: {self.numerical}, categorical: {self.categorical}); build the "
                    "profile with them (ReferenceProfile.from_frame(..., "
                    f"{kind}=[...]))"
                )
        return num, cat


# ---------------------------------------------------------------------------------------------
# public entry point


def _check_frame(frame: Any, side: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"the {side} data must be a pandas DataFrame, got {type(frame).__name__}")
    if len(frame) == 0:
        raise DataError(
            f"the {side} data has no rows; drift needs at least one row on each side "
            f"(check the {side} window or its path)"
        )


def _check_columns(frame: pd.DataFrame, columns: list[str], side: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"column(s) {missing} are missing in the {side} data (it has {list(frame.columns)}); "
            f"add them to the {side} data or leave them out of `numerical`/`categorical`"
        )


def _empty_message(column: str, side: str) -> str:
    return (
        f"column {column!r} has no finite, non-missing value in the {side} data, so its drift "
        "cannot be computed (Evidently fails on it too); fill it, leave it out of "
        "`numerical`/`categorical`, or pass on_empty='skip'"
    )


_PARALLEL_MIN_ROWS = 100_000


def _workers(max_workers: int | None, n_tasks: int, n_rows: int) -> int:
    if max_workers is not None and max_workers < 1:
        raise DataError(f"max_workers must be at least 1, got {max_workers}")
    if n_rows < _PARALLEL_MIN_ROWS:
        return 1
    wanted = max_workers if max_workers is not None else min(4, os.cpu_count() or 1)
    return max(1, min(wanted, n_tasks))


def _map(fn: Callable[[_T], _R], items: Sequence[_T], workers: int) -> list[_R]:
    """``[fn(x) for x in items]``, on a thread pool when ``workers > 1``; the first error (in
    item order) is raised."""
    if workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlops-drift") as pool:
        return list(pool.map(fn, items))


def detect_drift(
    reference: pd.DataFrame | ReferenceProfile,
    current: pd.DataFrame,
    *,
    numerical: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    drift_share: float = DEFAULT_DRIFT_SHARE,
    on_empty: Literal["raise", "skip"] = "raise",
    max_workers: int | None = None,
) -> DriftResult:
    """Decide per column and for the dataset whether ``current`` drifted from ``reference``.

    The decisions and scores are those of Evidently 0.7's ``DataDriftPreset(drift_share=...)``
    with default methods (see the module docstring).

    Args:
        reference: the reference table, or a :class:`ReferenceProfile` built from it.
        current: the table to check (a window of traffic, a batch input).
        numerical: numerical columns (a prediction column goes here too). With ``None``, the
            types are inferred like Evidently's ``infer_column_type`` on ``current`` (for a
            profile: the profile's columns); text columns are then skipped (see
            :attr:`DriftResult.skipped`).
        categorical: categorical columns; ``None`` infers them likewise.
        drift_share: the dataset drifts when the share of drifted columns is ``>=`` this.
        on_empty: a column with no finite non-missing value on one side raises
            :class:`DataError` (``"raise"``, like Evidently) or is left out (``"skip"``).
        max_workers: threads that test columns in parallel when the tables are large (numpy
            sorts outside the GIL); default ``min(4, CPUs)``, 1 for none.

    Raises:
        DataError: an empty table, a listed column missing on either side, a numerical column
            that is not numeric, an empty column (with ``on_empty="raise"``), or no column to
            test.
    """
    if not 0 <= drift_share <= 1:
        raise DataError(f"drift_share must be between 0 and 1, got {drift_share}")
    if on_empty not in ("raise", "skip"):
        raise DataError(f"on_empty must be 'raise' or 'skip', got {on_empty!r}")
    _check_frame(current, "current")
    skipped: dict[str, str] = {}
    profile: ReferenceProfile | None = None
    if isinstance(reference, ReferenceProfile):
        profile = reference
        num, cat = profile._select(numerical, categorical)
        if numerical is None and categorical is None:
            skipped.update(profile.skipped)
    else:
        _check_frame(reference, "reference")
        num, cat, skipped = _resolve_kinds(current, numerical, categorical)
        _check_columns(reference, num + cat, "reference")
    _check_columns(current, num + cat, "current")

    tasks: list[tuple[str, Kind, pd.Series | None, pd.Series]] = [
        (c, "numerical", None if profile else reference[c], current[c]) for c in num
    ] + [(c, "categorical", None if profile else reference[c], current[c]) for c in cat]

    def one(task: tuple[str, Kind, pd.Series | None, pd.Series]) -> ColumnDrift | str:
        column, kind, ref_series, cur_series = task
        if kind == "numerical":
            if profile is not None:
                ref_num = profile._numeric[column]
            else:
                assert ref_series is not None
                ref_num = _numeric_summary(
                    ref_series, column=column, side="reference", with_std=True
                )
            cur_num = _numeric_summary(cur_series, column=column, side="current")
            empty = _empty_side(ref_num.n, cur_num.n)
            if empty is None:
                return _numerical_drift(column, ref_num, cur_num)
        else:
            ref_cat = (
                profile._categorical[column]
                if profile is not None
                else _categorical_summary(ref_series)  # type: ignore[arg-type]
            )
            cur_cat = _categorical_summary(cur_series)
            empty = _empty_side(ref_cat.n, cur_cat.n)
            if empty is None:
                return _categorical_drift(column, ref_cat, cur_cat)
        if on_empty == "raise":
            raise DataError(_empty_message(column, empty))
        return f"no finite, non-missing value in the {empty} data"

    n_rows = len(current) + (profile.n_rows if profile else len(reference))  # type: ignore[arg-type]
    columns: dict[str, ColumnDrift] = {}
    for (column, *_), outcome in zip(
        tasks, _map(one, tasks, _workers(max_workers, len(tasks), n_rows)), strict=True
    ):
        if isinstance(outcome, str):
            skipped[column] = outcome
        else:
            columns[column] = outcome

    if not columns:
        raise DataError(
            "no column to test for drift"
            + (f" (skipped: {skipped})" if skipped else "")
            + "; pass `numerical` and/or `categorical` with columns present in both tables"
        )
    count = sum(col.drifted for col in columns.values())
    share = count / len(columns)
    return DriftResult(
        columns=columns,
        count=count,
        share=share,
        drifted=share >= drift_share,
        drift_share=drift_share,
        skipped=skipped,
    )


def _empty_side(n_ref: int, n_cur: int) -> str | None:
    if n_ref == 0:
        return "reference"
    if n_cur == 0:
        return "current"
    return None
