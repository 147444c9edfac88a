"""Checks that a table can train a model, feature coercion, task inference, target encoding."""

from __future__ import annotations

import difflib
import math
from typing import Any

import numpy as np
import pandas as pd

from mlops.data._columns import (
    as_datetime,
    describe_values,
    is_nested,
    is_text_like,
    parse_numeric,
    plain_value,
)
from mlops.errors import DataError
from mlops.types import Task

__all__ = [
    "MAX_CLASSES",
    "MIN_ROWS",
    "coerce_features",
    "encode_target",
    "infer_task",
    "validate_table",
]

MIN_ROWS = 20
"""Fewest rows with a target value that a table needs to be split and trained on."""
MAX_CLASSES = 20
"""Most distinct integer values an inferred multiclass target may have."""


def validate_table(
    frame: pd.DataFrame, target: str, *, source: str, task: Task | None = None
) -> None:
    """Raise :class:`DataError` when ``frame`` cannot train a model for ``target``.

    Datetime feature columns (dtype or parseable text) pass: :func:`engineer_features`
    turns them into numbers. Row numbers in messages count data rows from 1.

    Args:
        frame: the table.
        target: the target column.
        source: name of the table in messages (its path or dataset name).
        task: the task when known; inferred from the target otherwise.
    """
    if frame.shape[1] == 0:
        raise DataError(f"{source} has no columns; give it a header row and feature columns")
    if len(frame) == 0:
        raise DataError(f"{source} has no rows; add data rows to it")
    duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        raise DataError(f"{source} {duplicate_columns_problem(duplicated)}")
    if target not in frame.columns:
        names = [str(c) for c in frame.columns]
        close = difflib.get_close_matches(target, names, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise DataError(
            f"target column '{target}' is not in {source}{hint}; columns present: "
            f"{', '.join(names[:30])}{', ...' if len(names) > 30 else ''}; "
            "pass --target with one of them"
        )
    y = frame[target]
    nested = _nested_problem(y, f"target '{target}'", source)
    if nested:
        raise DataError(nested)
    if y.isna().all():
        raise DataError(
            f"target column '{target}' in {source} has no values (all {len(frame)} missing); "
            "fill it in or pass --target with another column"
        )
    features = [c for c in frame.columns if c != target]
    if not features:
        raise DataError(
            f"{source} has only the target column '{target}'; add feature columns to it"
        )
    problems = [p for col in features if (p := _feature_problem(frame[col], str(col), source))]
    if len(problems) == 1:
        raise DataError(problems[0])
    if problems:
        listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
        raise DataError(f"{len(problems)} feature columns of {source} cannot be used: {listed}")
    y = y.dropna()
    if len(y) < MIN_ROWS:
        raise DataError(
            f"{source} has only {len(y)} rows with a value in target '{target}'; at least "
            f"{MIN_ROWS} are needed to split and train; add rows (or fill in the target)"
        )
    task = task or infer_task(y)[0]
    _check_target(y, target, source, Task(task))


def coerce_features(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """A copy with numeric-like text features as float64 and booleans as int64.

    Nullable integer features become int64 (float64 when values are missing). Other columns,
    and the target, are left as they are.
    """
    out = frame.copy()
    for col in out.columns:
        if col == target:
            continue
        series = out[col]
        dtype = series.dtype
        if pd.api.types.is_bool_dtype(dtype):
            out[col] = series.astype("float64" if series.isna().any() else "int64")
        elif isinstance(dtype, pd.api.extensions.ExtensionDtype) and pd.api.types.is_numeric_dtype(
            dtype
        ):
            integer = pd.api.types.is_integer_dtype(dtype) and not series.isna().any()
            out[col] = series.astype("int64" if integer else "float64")
        elif is_text_like(series) and not series.isna().all():
            parsed = parse_numeric(series)
            if parsed.notna().sum() == series.notna().sum():
                out[col] = parsed
    return out


def infer_task(target: pd.Series) -> tuple[Task, str]:
    """Guess the task from the target's values; return it and a one-sentence reason.

    Rules, on the non-missing values (text that is all numbers counts as numeric):

    * text, categorical or boolean: 2 distinct values -> binary, otherwise multiclass;
    * numeric, whole numbers with exactly 2 distinct values -> binary;
    * numeric, whole numbers with 3 to 20 distinct values -> multiclass when the distinct
      values are at most 5% of the rows, or are the codes 0..k-1 or 1..k each seen at least
      twice (small tables of class codes);
    * anything else -> regression.
    """
    name = f"target '{target.name}'" if target.name is not None else "the target"
    values = target.dropna()
    numeric = _numeric_or_none(values)
    if numeric is None:
        k = values.nunique()
        kind = "boolean" if pd.api.types.is_bool_dtype(values.dtype) else "non-numeric"
        if k == 2:
            return Task.BINARY, f"{name} is {kind} with 2 distinct values"
        return Task.MULTICLASS, f"{name} is {kind} with {k} distinct values"
    finite = numeric[np.isfinite(numeric)]
    k = int(finite.nunique())
    whole = len(finite) > 0 and bool((finite == np.round(finite)).all())
    if whole and k == 2:
        return Task.BINARY, f"{name} has exactly 2 distinct whole-number values"
    if whole and 3 <= k <= MAX_CLASSES:
        counts = finite.value_counts()
        codes = sorted(counts.index)
        is_codes = codes in (list(range(k)), list(range(1, k + 1))) and counts.min() >= 2
        if k <= 0.05 * len(finite) or is_codes:
            return Task.MULTICLASS, (
                f"{name} has {k} distinct whole-number values in {len(finite)} rows, "
                "which look like class labels"
            )
    if whole:
        return Task.REGRESSION, (
            f"{name} is numeric with {k} distinct whole-number values in {len(finite)} rows, "
            "too many to be class labels"
        )
    return Task.REGRESSION, f"{name} is numeric with fractional values ({k} distinct)"


def encode_target(target: pd.Series, task: Task) -> tuple[pd.Series, list[Any]]:
    """Encode a target with no missing values for training.

    Classification: int64 codes 0..k-1 and the sorted original labels as JSON-serializable
    values (``labels[code]`` is the original). Regression: float64 values and ``[]``.
    """
    name = f"target '{target.name}'" if target.name is not None else "the target"
    missing = int(target.isna().sum())
    if missing:
        raise DataError(
            f"{name} has {missing} missing values; drop the rows without a target before "
            "encoding it"
        )
    if Task(task) is Task.REGRESSION:
        numeric = _numeric_or_none(target)
        if numeric is None:
            raise DataError(
                f"{name} is not numeric ({describe_values(_bad_values(target), 3)}), so it "
                "cannot be a regression target; clean the values or use --task binary/multiclass"
            )
        return numeric.rename(target.name), []
    labels = _sorted_labels(target.unique())
    if Task(task) is Task.BINARY and len(labels) > 2:
        raise DataError(
            f"{name} has {len(labels)} classes but the task is binary; use --task multiclass "
            "or keep only two classes"
        )
    lookup = {_label_key(v): i for i, v in enumerate(labels)}
    codes = target.map(lambda v: lookup[_label_key(v)]).astype("int64")
    return codes, [_json_value(v) for v in labels]


def _feature_problem(series: pd.Series, col: str, source: str) -> str | None:
    """The reason a feature column cannot be used, or ``None``."""
    nested = _nested_problem(series, f"column '{col}'", source)
    if nested:
        return nested
    if series.isna().all():
        return f"column '{col}' in {source} has no values (all missing); drop the column"
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_datetime64_any_dtype(
        series.dtype
    ):
        return None
    if pd.api.types.is_numeric_dtype(series.dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        inf = np.flatnonzero(np.isinf(values))
        if len(inf):
            shown = describe_values((values[i], i + 1) for i in inf)
            return (
                f"column '{col}' in {source} has infinite values ({shown}); "
                "replace them with numbers or leave the cells empty"
            )
        return None
    parsed = parse_numeric(series)
    present = series.notna().to_numpy()
    share = parsed.notna().sum() / present.sum()
    if share == 1:
        return None
    if share >= 0.5:
        bad = np.flatnonzero(present & parsed.isna().to_numpy())
        shown = describe_values((series.iloc[i], i + 1) for i in bad)
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        return (
            f"column '{col}' in {source} has non-numeric values ({shown}{more}); "
            "clean them or drop the column"
        )
    if as_datetime(series, col) is not None:
        return None
    examples = ", ".join(plain_value(v) for v in series.dropna().unique()[:3])
    return (
        f"column '{col}' in {source} is text ({examples}, ...); text/categorical features are "
        "not supported yet: encode it as numbers or drop the column"
    )


def duplicate_columns_problem(names: list[str]) -> str:
    """The end of the message for a table whose header repeats ``names``."""
    return (
        f"has duplicate column names ({', '.join(repr(n) for n in names)}); a column must be "
        "named once: rename or drop the repeated ones"
    )


def _nested_problem(series: pd.Series, what: str, source: str) -> str | None:
    """Lists, arrays or mappings in cells (parquet list/struct columns) cannot be features."""
    if not pd.api.types.is_object_dtype(series.dtype):
        return None
    cells = series.to_numpy()
    rows = [i for i in range(len(cells)) if is_nested(cells[i])]
    if not rows:
        return None
    first = cells[rows[0]]
    kind = type(first).__name__ if not isinstance(first, np.ndarray) else "list"
    example = repr(first.tolist() if isinstance(first, np.ndarray) else first)
    if len(example) > 40:
        example = example[:37] + "..."
    return (
        f"{what} in {source} holds nested values ({kind}s such as {example} at row "
        f"{rows[0] + 1}, {len(rows)} rows in all); only plain numbers, text, dates and booleans "
        "can be used: spread the values into columns of their own or drop the column"
    )


def _check_target(y: pd.Series, target: str, source: str, task: Task) -> None:
    if task is Task.REGRESSION:
        numeric = _numeric_or_none(y)
        if numeric is None:
            raise DataError(
                f"target '{target}' in {source} is not numeric "
                f"({describe_values(_bad_values(y), 3)}) but the task is regression; "
                "clean the values or use --task binary/multiclass"
            )
        if not np.isfinite(numeric).all():
            raise DataError(
                f"target '{target}' in {source} has infinite values; replace or drop those rows"
            )
        if numeric.nunique() < 2:
            raise DataError(
                f"target '{target}' in {source} is constant ({plain_value(numeric.iloc[0])} in "
                "every row); a model cannot learn from it: check the column or pass another "
                "--target"
            )
        return
    k = y.nunique()
    if k < 2:
        raise DataError(
            f"target '{target}' in {source} has a single class ({plain_value(y.iloc[0])}); "
            "classification needs at least two: add rows of other classes or pass another "
            "--target"
        )
    if task is Task.BINARY and k > 2:
        raise DataError(
            f"target '{target}' in {source} has {k} classes but the task is binary; "
            "use --task multiclass or keep two classes"
        )


def _numeric_or_none(values: pd.Series) -> pd.Series | None:
    """The values as float64 when all are numbers (not booleans), else ``None``."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return None
    if pd.api.types.is_numeric_dtype(values.dtype) and not isinstance(
        values.dtype, pd.CategoricalDtype
    ):
        return values.astype("float64")
    if not is_text_like(values):
        return None
    parsed = parse_numeric(values)
    if parsed.notna().sum() != values.notna().sum() or values.map(type).eq(bool).any():
        return None
    return parsed


def _bad_values(values: pd.Series) -> list[tuple[Any, int]]:
    parsed = parse_numeric(values).to_numpy()
    present = values.notna().to_numpy()
    return [(values.iloc[i], i + 1) for i in np.flatnonzero(present & np.isnan(parsed))]


def _sorted_labels(values: Any) -> list[Any]:
    unique = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    try:
        return sorted(unique)
    except TypeError:  # mixed types
        return sorted(unique, key=lambda v: (type(v).__name__, str(v)))


def _label_key(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _json_value(value: Any) -> Any:
    """A plain Python value for a label: int for whole floats, ISO text for timestamps."""
    value = _label_key(value)
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)
