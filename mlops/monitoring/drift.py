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

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import pandas as pd

from mlops.errors import DataError
from mlops.monitoring.stattests import (
    CatSummary,
    ColumnDrift,
    Kind,
    NumSummary,
    categorical_drift,
    categorical_summary,
    numeric_summary,
    numerical_drift,
)

__all__ = [
    "DEFAULT_DRIFT_SHARE",
    "DriftResult",
    "ReferenceProfile",
    "detect_drift",
    "infer_column_kind",
]

#: Evidently's ``INTEGER_CARDINALITY_LIMIT``: an int column with at most this many values is
#: categorical.
INTEGER_CARDINALITY_LIMIT = 10
DEFAULT_DRIFT_SHARE = 0.5

_T = TypeVar("_T")
_R = TypeVar("_R")


# ---------------------------------------------------------------------------------------------
# results


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
# reference profile


class ReferenceProfile:
    """A reference table prepared once: sorted finite values of each numerical column and
    value counts of each categorical column.

    Pass it as ``reference`` to :func:`detect_drift` to check many current windows against the
    same reference without sorting it again. The original frame is not kept.
    """

    def __init__(
        self,
        numeric: dict[str, NumSummary],
        categorical: dict[str, CatSummary],
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
            lambda c: numeric_summary(c[1], column=c[0], side="reference", with_std=True),
            [(c, reference[c]) for c in num],
            workers,
        )
        counts = _map(categorical_summary, [reference[c] for c in cat], workers)
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
                ref_num = numeric_summary(
                    ref_series, column=column, side="reference", with_std=True
                )
            cur_num = numeric_summary(cur_series, column=column, side="current")
            empty = _empty_side(ref_num.n, cur_num.n)
            if empty is None:
                return numerical_drift(column, ref_num, cur_num)
        else:
            ref_cat = (
                profile._categorical[column]
                if profile is not None
                else categorical_summary(ref_series)  # type: ignore[arg-type]
            )
            cur_cat = categorical_summary(cur_series)
            empty = _empty_side(ref_cat.n, cur_cat.n)
            if empty is None:
                return categorical_drift(column, ref_cat, cur_cat)
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
