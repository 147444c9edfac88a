"""Column helpers shared by the data modules (private to :mod:`mlops.data`)."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "as_datetime",
    "describe_values",
    "is_nested",
    "is_text_like",
    "parse_numeric",
    "plain_value",
    "snake_case",
]

# Text columns whose names look like times may be parsed with the slower, lenient parser.
_DATE_HINT = re.compile(r"date|time|timestamp|pickup|dropoff|_at$|_on$", re.IGNORECASE)


def snake_case(name: str) -> str:
    """``'mean radius'`` -> ``'mean_radius'``, ``'sepal length (cm)'`` -> ``'sepal_length_cm'``."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", name.strip()).strip("_").lower()


def is_text_like(series: pd.Series) -> bool:
    """Whether a column holds text-ish values (object, string or categorical dtype)."""
    dtype = series.dtype
    return (
        pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    )


def parse_numeric(series: pd.Series) -> pd.Series:
    """The values as float64; NaN where a value is missing or is not a number."""
    values = series.astype(object) if isinstance(series.dtype, pd.CategoricalDtype) else series
    parsed = pd.to_numeric(values, errors="coerce")
    return pd.Series(parsed, index=series.index, name=series.name).astype("float64")


def as_datetime(series: pd.Series, name: str) -> pd.Series | None:
    """The column as datetimes when it is one (dtype or parseable text), else ``None``.

    Text is accepted when every non-missing value parses as ISO 8601, or, for columns whose
    name suggests a time (``date``, ``time``, ``pickup``...), in any format pandas understands.
    """
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series
    if not is_text_like(series):
        return None
    values = series.dropna()
    if values.empty or not values.map(lambda v: isinstance(v, str)).all():
        return None
    if parse_numeric(values).notna().mean() > 0.5:  # numbers written as text are not dates
        return None
    text = series.astype(object)
    formats = ["ISO8601", "mixed"] if _DATE_HINT.search(name) else ["ISO8601"]
    for fmt in formats:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                parsed = pd.to_datetime(text, format=fmt, errors="raise")
            except (ValueError, TypeError, OverflowError):
                continue
        if pd.api.types.is_datetime64_any_dtype(parsed.dtype):
            return parsed
    return None


def plain_value(value: Any) -> str:
    """A cell as a person writes it: ``inf``, ``3.5``, ``'abc'`` (not ``np.float64(inf)``)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return str(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, bool | int):
        return str(value)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return repr(value)


def is_nested(value: Any) -> bool:
    """Whether a cell holds a list, array, set or mapping (a parquet list/struct column)."""
    return isinstance(value, list | tuple | set | dict | np.ndarray)


def describe_values(pairs: Iterable[tuple[Any, int]], limit: int = 5) -> str:
    """``"'abc' at row 17, 'x' at row 40"`` from (value, 1-based row) pairs."""
    shown = []
    for value, row in list(pairs)[:limit]:
        text = plain_value(value)
        if len(text) > 40:
            text = text[:37] + "..."
        shown.append(f"{text} at row {row}")
    return ", ".join(shown)
