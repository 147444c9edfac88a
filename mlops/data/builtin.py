"""Built-in datasets, new batches of them for drift demos, and generic feature engineering.

* ``taxi``: NYC green-taxi trips, generated from seeded, realistic distributions (regression
  of ``total_amount``). Its features, once engineered, are the reference SageMaker pipeline's
  ``duration_minutes, passenger_count, trip_distance``, in that order, and its fares match
  that pipeline's February 2018 sample (``10.65,1,2.56`` costs about $12.7).
* ``mammography``: scikit-learn's breast-cancer Wisconsin data (binary ``severity``).
* ``iris``: scikit-learn's iris data (multiclass ``species``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlops.data._columns import as_datetime, snake_case
from mlops.errors import DataError, DatasetNotFoundError
from mlops.types import Task

__all__ = [
    "BUILTIN_DATASETS",
    "BUILTIN_TASKS",
    "BuiltinDataset",
    "engineer_features",
    "load_builtin",
    "make_batch",
]

BUILTIN_DATASETS: tuple[str, ...] = ("taxi", "mammography", "iris")
#: The task of each built-in dataset, known without loading it.
BUILTIN_TASKS: dict[str, Task] = {
    "taxi": Task.REGRESSION,
    "mammography": Task.BINARY,
    "iris": Task.MULTICLASS,
}

_TAXI_ROWS = 20_000
_TAXI_TARGET = "total_amount"
_TAXI_MONTH = pd.Timestamp("2024-01-01")  # training data; batches come from the next month
_TAXI_COLUMNS = [
    "lpep_pickup_datetime",
    "lpep_dropoff_datetime",
    "passenger_count",
    "trip_distance",
    _TAXI_TARGET,
]
# Relative demand by hour of day (quiet before dawn, peaks in the evening).
_HOUR_DEMAND = np.array(
    [2.8, 2.0, 1.4, 1.0, 0.9, 1.0, 2.0, 3.5, 4.3, 4.3, 4.2, 4.4,
     4.7, 4.8, 5.1, 5.3, 5.4, 6.1, 6.5, 6.0, 5.2, 4.8, 4.4, 3.6]
)  # fmt: skip
# Speed multiplier by hour: slow at the weekday rush hours, fast at night.
_WEEKDAY_TRAFFIC = np.array(
    [1.30, 1.35, 1.35, 1.35, 1.30, 1.15, 1.00, 0.75, 0.70, 0.75, 0.85, 0.85,
     0.85, 0.85, 0.85, 0.80, 0.72, 0.68, 0.70, 0.80, 0.95, 1.00, 1.05, 1.15]
)  # fmt: skip
_WEEKEND_TRAFFIC = np.clip(_WEEKDAY_TRAFFIC, 0.88, None)
_PASSENGER_P = np.array([0.72, 0.14, 0.04, 0.02, 0.05, 0.03])  # 1..6 passengers
_LOG_DISTANCE_SIGMA = 0.75
# Fares of the reference pipeline's data (NYC green taxi, February 2018, before the 2019
# congestion surcharge): the $2.50 flag drop, a rate per mile and per minute (the meter's
# $0.50/min applies only in slow traffic, so the minute rate is its average over a trip), the
# $0.50 MTA tax and $0.30 improvement surcharge, $0.50 at night and $1 in the weekday rush,
# a $5.76 bridge toll on some long trips, and a 12-22% tip on the 40% of trips paid by card.
# The two rates are fitted so that a model trained on the 20,000 default rows answers the
# reference sample trips 2.56 mi in 10.65 min with about $12.7 and 9.6 mi in 22.8 min with
# about $35.8 (1 passenger).
_FLAG_DROP = 2.50
_PER_MILE = 2.85
_PER_MINUTE = 0.11
_MTA_TAX = 0.50
_IMPROVEMENT = 0.30
_TOLL = 5.76
_TIPPED_SHARE = 0.40

_DESCRIPTIONS = {
    "taxi": "NYC green-taxi trips of one month, generated from seeded realistic distributions; "
    "regression of the fare total_amount in dollars",
    "mammography": "breast-cancer Wisconsin diagnostic data (scikit-learn); binary severity, "
    "1 = malignant, 0 = benign",
    "iris": "Fisher's iris flowers (scikit-learn); multiclass species, 0 = setosa, "
    "1 = versicolor, 2 = virginica",
}


@dataclass(frozen=True)
class BuiltinDataset:
    """A ready table with its target column and task."""

    name: str
    frame: pd.DataFrame
    target: str
    task: Task
    description: str


def load_builtin(name: str, *, rows: int | None = None, seed: int = 42) -> BuiltinDataset:
    """Load a built-in dataset.

    Args:
        name: one of :data:`BUILTIN_DATASETS`.
        rows: number of rows; default 20,000 for ``taxi`` and the whole real table otherwise
            (a seeded subset when smaller, a seeded sample with replacement when larger).
        seed: seed of the generator and of the sampling.

    Raises:
        DatasetNotFoundError: the name is not a built-in dataset.
    """
    key = _check_name(name)
    if rows is not None:
        _check_rows(rows, key)
    rng = np.random.default_rng(seed)
    if key == "taxi":
        frame = _taxi_frame(rows or _TAXI_ROWS, rng, month=_TAXI_MONTH)
        return BuiltinDataset(key, frame, _TAXI_TARGET, Task.REGRESSION, _DESCRIPTIONS[key])
    frame, target, task = _real_frame(key)
    if rows is not None and rows != len(frame):
        picks = rng.choice(len(frame), size=rows, replace=rows > len(frame))
        if rows < len(frame):
            picks = np.sort(picks)
        frame = frame.iloc[picks].reset_index(drop=True)
    return BuiltinDataset(key, frame, target, task, _DESCRIPTIONS[key])


def make_batch(
    name: str,
    *,
    rows: int,
    shift: float = 0.0,
    outlier_fraction: float = 0.0,
    seed: int = 0,
    include_target: bool = True,
) -> pd.DataFrame:
    """A new batch of a built-in dataset, with the raw columns of ``load_builtin(name).frame``.

    Args:
        name: one of :data:`BUILTIN_DATASETS`.
        rows: number of rows.
        shift: moves the numeric features by this many standard deviations. ``taxi``: trips
            from the next month, longer (log-distance shifted) and with more passengers; the
            fare still follows the generating relation. Real datasets: rows resampled with a
            small gaussian jitter, then every feature moved by ``shift`` of its std.
        outlier_fraction: share of rows given implausible but well-typed values (taxi: 50x
            the distance, half of them also 20x the duration; real datasets: one feature set
            to about mean + 10 std). Targets of these rows keep their clean values.
        seed: seed; the same arguments give the same batch.
        include_target: keep the target column.

    Raises:
        DatasetNotFoundError: unknown name. DataError: rows < 1 or fraction outside [0, 1].
    """
    key = _check_name(name)
    _check_rows(rows, key)
    if not 0.0 <= outlier_fraction <= 1.0:
        raise DataError(
            f"outlier_fraction for a {key} batch is {outlier_fraction}; "
            "pass a fraction between 0 and 1"
        )
    rng = np.random.default_rng([seed, 7919])  # a stream apart from load_builtin's
    n_outliers = int(round(outlier_fraction * rows))
    if key == "taxi":
        next_month = _TAXI_MONTH + pd.offsets.MonthBegin(1)
        frame = _taxi_frame(rows, rng, month=next_month, shift=shift)
        if n_outliers:
            _taxi_outliers(frame, rng.choice(rows, size=n_outliers, replace=False), rng)
        target = _TAXI_TARGET
    else:
        base, target, _ = _real_frame(key)
        frame = _real_batch(base, target, rows, shift, n_outliers, rng)
    return frame if include_target else frame.drop(columns=[target])


def engineer_features(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, list[str]]:
    """Turn datetime columns into numbers; return the new frame and notes of what was done.

    A pickup and a dropoff datetime column (names containing ``pickup``/``dropoff``, datetime
    dtype or parseable text) become ``duration_minutes``; other datetime columns become
    ``<col>_hour`` and ``<col>_dayofweek`` (0 = Monday). New features take the place of the
    columns they replace (``duration_minutes`` where the first of pickup/dropoff was), the other
    columns keep their order and the target, untouched, comes last. So the raw NYC taxi layout
    ``pickup, dropoff, passenger_count, trip_distance`` gives the reference pipeline's
    ``duration_minutes, passenger_count, trip_distance``. The input is not modified.
    """
    dates: dict[object, pd.Series] = {}
    for col in frame.columns:
        if col == target:
            continue
        parsed = as_datetime(frame[col], str(col))
        if parsed is not None:
            dates[col] = parsed
    notes: list[str] = []
    # what each replaced column turns into: the new features sit where their source column was
    replaced: dict[object, dict[str, pd.Series]] = {}
    taken = {str(c) for c in frame.columns}
    pickup = next((c for c in dates if "pickup" in str(c).lower()), None)
    dropoff = next((c for c in dates if "dropoff" in str(c).lower()), None)
    if pickup is not None and dropoff is not None:
        start, end = _naive(dates.pop(pickup)), _naive(dates.pop(dropoff))
        minutes = ((end - start).dt.total_seconds() / 60.0).astype("float64")
        name = _unique("duration_minutes", taken)
        first, second = sorted((pickup, dropoff), key=list(frame.columns).index)
        replaced[first], replaced[second] = {name: minutes}, {}
        notes.append(f"added {name} = {dropoff} - {pickup} in minutes and dropped both columns")
        negative = int((minutes < 0).sum())
        if negative:
            notes.append(f"{negative} rows have {dropoff} before {pickup} (negative {name})")
    for col, parsed in dates.items():
        replaced[col] = {}
        for part in ("hour", "dayofweek"):
            values = getattr(parsed.dt, part)
            name = _unique(f"{col}_{part}", taken)
            replaced[col][name] = values.astype("float64" if values.isna().any() else "int64")
        hour, day = replaced[col]
        notes.append(f"replaced datetime column {col} by {hour} and {day} (0 = Monday)")
    parts: list[pd.Series] = []
    for i, col in enumerate(frame.columns):
        if col == target:
            continue
        if col in replaced:
            parts.extend(values.rename(name) for name, values in replaced[col].items())
        else:
            parts.append(frame.iloc[:, i])
    if target in frame.columns:
        parts.append(frame[target])
    if not parts:
        return frame.iloc[:, :0].copy(), notes
    return pd.concat(parts, axis=1), notes


def _check_name(name: str) -> str:
    key = name.strip().lower()
    if key not in BUILTIN_DATASETS:
        raise DatasetNotFoundError(
            f"'{name}' is not a built-in dataset (known: {', '.join(BUILTIN_DATASETS)}); "
            "use one of these names, or your own table with --data PATH --target COLUMN"
        )
    return key


def _check_rows(rows: int, name: str) -> None:
    if isinstance(rows, bool) or not isinstance(rows, int | np.integer) or rows < 1:
        raise DataError(f"rows for dataset '{name}' is {rows!r}; pass a whole number >= 1")


def _unique(name: str, taken: set[str]) -> str:
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    taken.add(candidate)
    return candidate


def _naive(values: pd.Series) -> pd.Series:
    """Timezone-aware datetimes converted to naive UTC so that they can be subtracted."""
    if getattr(values.dt, "tz", None) is not None:
        return values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values


def _taxi_frame(
    rows: int, rng: np.random.Generator, *, month: pd.Timestamp, shift: float = 0.0
) -> pd.DataFrame:
    """Generate ``rows`` green-taxi trips with pickups spread over ``month``."""
    days = month.days_in_month
    hour = rng.choice(24, size=rows, p=_HOUR_DEMAND / _HOUR_DEMAND.sum())
    offset_s = rng.integers(0, days, rows) * 86_400 + hour * 3_600 + rng.integers(0, 3_600, rows)
    pickup = month + pd.to_timedelta(offset_s, unit="s")

    tilt = _PASSENGER_P * np.exp(0.4 * shift * np.arange(6))  # ~shift std more riders
    passengers = rng.choice(np.arange(1, 7), size=rows, p=tilt / tilt.sum())

    airport = rng.random(rows) < 0.04  # a few long trips to the airports
    log_distance = np.where(
        airport,
        rng.normal(np.log(11.0), 0.3, rows),
        rng.normal(np.log(1.9), _LOG_DISTANCE_SIGMA, rows),
    )
    upper = 30.0 * np.exp(_LOG_DISTANCE_SIGMA * max(shift, 0.0))
    distance = np.clip(np.exp(log_distance + shift * _LOG_DISTANCE_SIGMA), 0.1, upper).round(2)

    weekend = pickup.dayofweek.to_numpy() >= 5
    traffic = np.where(weekend, _WEEKEND_TRAFFIC[hour], _WEEKDAY_TRAFFIC[hour])
    speed_mph = (8.5 + 4.0 * np.log1p(distance)) * traffic * rng.lognormal(0.0, 0.18, rows)
    minutes = distance / speed_mph * 60.0 + rng.gamma(2.0, 0.6, rows)  # plus curb time
    minutes = np.clip(minutes, 1.0, 240.0)
    dropoff = pickup + pd.to_timedelta(np.round(minutes * 60.0), unit="s")

    meter = _FLAG_DROP + _PER_MILE * distance + _PER_MINUTE * minutes
    night = (hour >= 20) | (hour < 6)
    rush = ~weekend & (hour >= 16) & (hour < 20)
    extras = _MTA_TAX + _IMPROVEMENT + 0.5 * night + 1.0 * rush  # night and weekday-rush extras
    tolls = _TOLL * (rng.random(rows) < np.where(distance > 8.0, 0.15, 0.01))
    tipped = rng.random(rows) < _TIPPED_SHARE  # card payments; cash tips are not recorded
    tip = np.where(tipped, meter * rng.uniform(0.12, 0.22, rows), 0.0)
    total = np.round(meter + extras + tolls + tip, 2)

    frame = pd.DataFrame(
        {
            "lpep_pickup_datetime": pickup.astype("datetime64[ns]"),
            "lpep_dropoff_datetime": dropoff.astype("datetime64[ns]"),
            "passenger_count": passengers.astype("int64"),
            "trip_distance": distance.astype("float64"),
            _TAXI_TARGET: total.astype("float64"),
        }
    )
    return frame.sort_values("lpep_pickup_datetime", kind="stable").reset_index(drop=True)


def _taxi_outliers(frame: pd.DataFrame, picks: np.ndarray, rng: np.random.Generator) -> None:
    """50x the distance of the picked trips, and 20x the duration of half of them."""
    col = frame.columns.get_loc("trip_distance")
    frame.iloc[picks, col] = (frame["trip_distance"].to_numpy()[picks] * 50.0).round(2)
    slow = picks[rng.random(len(picks)) < 0.5]
    start = frame["lpep_pickup_datetime"].to_numpy()[slow]
    end = frame["lpep_dropoff_datetime"].to_numpy()[slow]
    col = frame.columns.get_loc("lpep_dropoff_datetime")
    frame.iloc[slow, col] = start + (end - start) * 20


def _real_frame(name: str) -> tuple[pd.DataFrame, str, Task]:
    """The whole scikit-learn table with snake_case columns, its target and task."""
    from sklearn import datasets  # heavy: imported only when a real dataset is used

    if name == "mammography":
        bunch = datasets.load_breast_cancer()
        target, task = "severity", Task.BINARY
        labels = 1 - np.asarray(bunch.target)  # scikit-learn codes malignant as 0
    else:
        bunch = datasets.load_iris()
        target, task = "species", Task.MULTICLASS
        labels = np.asarray(bunch.target)
    columns = [snake_case(str(c)) for c in bunch.feature_names]
    frame = pd.DataFrame(np.asarray(bunch.data, dtype="float64"), columns=columns)
    frame[target] = labels.astype("int64")
    return frame, target, task


def _real_batch(
    base: pd.DataFrame,
    target: str,
    rows: int,
    shift: float,
    n_outliers: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Resampled rows with jitter, shifted by ``shift`` std, with optional outliers."""
    frame = base.iloc[rng.integers(0, len(base), rows)].reset_index(drop=True)
    features = [c for c in frame.columns if c != target]
    std = base[features].std().to_numpy()
    mean = base[features].mean().to_numpy()
    values = frame[features].to_numpy(dtype="float64", copy=True)
    values += rng.normal(0.0, 1.0, values.shape) * 0.05 * std + shift * std
    non_negative = base[features].min().to_numpy() >= 0
    values = np.where(non_negative, np.clip(values, 0.0, None), values)
    if n_outliers:
        picked_rows = rng.choice(rows, size=n_outliers, replace=False)
        picked_cols = rng.integers(0, len(features), n_outliers)
        factor = rng.uniform(8.0, 12.0, n_outliers)
        values[picked_rows, picked_cols] = (
            mean[picked_cols] + factor * std[picked_cols] + shift * std[picked_cols]
        )
    frame[features] = values
    return frame
