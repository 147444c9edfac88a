"""Built-in datasets, batches and feature engineering."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops.data import (
    BUILTIN_DATASETS,
    engineer_features,
    load_builtin,
    make_batch,
)
from mlops.errors import DataError, DatasetNotFoundError
from mlops.types import Task

# The feature order of the reference pipeline's model (its captured line `10.65,1,2.56`).
REFERENCE_FEATURES = ["duration_minutes", "passenger_count", "trip_distance"]
TAXI_COLUMNS = [
    "lpep_pickup_datetime",
    "lpep_dropoff_datetime",
    "passenger_count",
    "trip_distance",
    "total_amount",
]


@pytest.fixture(scope="module")
def taxi():
    return load_builtin("taxi", rows=4000)


def test_taxi_columns_target_and_task(taxi):
    assert taxi.name == "taxi"
    assert taxi.target == "total_amount"
    assert taxi.task is Task.REGRESSION
    assert list(taxi.frame.columns) == TAXI_COLUMNS
    assert len(taxi.frame) == 4000
    dtypes = taxi.frame.dtypes
    assert pd.api.types.is_datetime64_any_dtype(dtypes["lpep_pickup_datetime"])
    assert pd.api.types.is_datetime64_any_dtype(dtypes["lpep_dropoff_datetime"])
    assert dtypes["passenger_count"] == np.int64
    assert dtypes["trip_distance"] == np.float64
    assert taxi.description


def test_taxi_default_rows_and_realistic_distributions():
    frame = load_builtin("taxi").frame
    assert len(frame) == 20_000
    assert 1.6 <= frame["trip_distance"].median() <= 2.5
    assert frame["trip_distance"].max() <= 35
    assert frame["trip_distance"].min() > 0
    share_single = (frame["passenger_count"] == 1).mean()
    assert 0.6 < share_single < 0.85
    assert set(frame["passenger_count"]) <= set(range(1, 7))
    assert (frame["lpep_dropoff_datetime"] > frame["lpep_pickup_datetime"]).all()
    pickup = frame["lpep_pickup_datetime"]
    assert pickup.dt.day.nunique() >= 28  # spread over a month
    assert (frame["total_amount"] >= 2.5 + 2.5 * frame["trip_distance"]).all()


def test_taxi_rush_hour_is_slower_than_night():
    frame = load_builtin("taxi", rows=10_000).frame
    minutes = (frame["lpep_dropoff_datetime"] - frame["lpep_pickup_datetime"]).dt.total_seconds()
    mph = frame["trip_distance"] / (minutes / 3600)
    hour = frame["lpep_pickup_datetime"].dt.hour
    weekday = frame["lpep_pickup_datetime"].dt.dayofweek < 5
    rush = mph[weekday & hour.isin([17, 18])].median()
    night = mph[hour.isin([1, 2, 3])].median()
    assert rush < 0.8 * night


def test_taxi_relation_is_learnable(taxi):
    from sklearn.ensemble import HistGradientBoostingRegressor

    frame, _ = engineer_features(taxi.frame, taxi.target)
    x = frame.drop(columns=[taxi.target])
    y = frame[taxi.target]
    model = HistGradientBoostingRegressor(random_state=0).fit(x.iloc[:3000], y.iloc[:3000])
    assert model.score(x.iloc[3000:], y.iloc[3000:]) > 0.85


@pytest.mark.parametrize("name", BUILTIN_DATASETS)
def test_builtins_are_seeded_deterministic(name):
    first = load_builtin(name, rows=300, seed=3).frame
    again = load_builtin(name, rows=300, seed=3).frame
    other = load_builtin(name, rows=300, seed=4).frame
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_mammography_is_real_breast_cancer_data():
    data = load_builtin("mammography")
    assert data.target == "severity"
    assert data.task is Task.BINARY
    assert data.frame.shape == (569, 31)
    assert {"mean_radius", "worst_concave_points", "radius_error"} <= set(data.frame.columns)
    assert data.frame["severity"].value_counts().to_dict() == {0: 357, 1: 212}  # 1 = malignant
    # malignant tumours are larger
    by_class = data.frame.groupby("severity")["mean_radius"].mean()
    assert by_class[1] > by_class[0]


def test_iris_is_real_iris_data():
    data = load_builtin("iris")
    assert data.target == "species"
    assert data.task is Task.MULTICLASS
    assert list(data.frame.columns) == [
        "sepal_length_cm",
        "sepal_width_cm",
        "petal_length_cm",
        "petal_width_cm",
        "species",
    ]
    assert data.frame["species"].dtype == np.int64
    assert sorted(data.frame["species"].unique()) == [0, 1, 2]
    assert data.frame.iloc[0, :4].tolist() == [5.1, 3.5, 1.4, 0.2]


def test_real_datasets_rows_subset_and_oversample():
    small = load_builtin("iris", rows=40, seed=1).frame
    big = load_builtin("iris", rows=1000, seed=1).frame
    full = load_builtin("iris").frame
    assert len(small) == 40 and not small.duplicated().all()
    assert len(big) == 1000
    rows_full = set(map(tuple, full.to_numpy()))
    assert set(map(tuple, small.to_numpy())) <= rows_full
    assert set(map(tuple, big.to_numpy())) <= rows_full
    assert list(big.index) == list(range(1000))


def test_unknown_dataset_lists_known_names_and_data_flag():
    with pytest.raises(DatasetNotFoundError) as info:
        load_builtin("titanic")
    message = str(info.value)
    assert "titanic" in message
    for name in BUILTIN_DATASETS:
        assert name in message
    assert "--data PATH --target COLUMN" in message


def test_bad_rows_is_data_error():
    with pytest.raises(DataError, match="rows"):
        load_builtin("taxi", rows=0)
    with pytest.raises(DataError, match="outlier_fraction"):
        make_batch("iris", rows=10, outlier_fraction=1.5)


def test_taxi_engineered_features(taxi):
    frame, notes = engineer_features(taxi.frame, taxi.target)
    # the reference SageMaker pipeline's CSV order: duration_minutes,passenger_count,trip_distance
    assert list(frame.columns) == REFERENCE_FEATURES + ["total_amount"]
    expected = (
        taxi.frame["lpep_dropoff_datetime"] - taxi.frame["lpep_pickup_datetime"]
    ).dt.total_seconds() / 60
    np.testing.assert_allclose(frame["duration_minutes"], expected)
    assert (frame["duration_minutes"] > 0).all()
    pd.testing.assert_series_equal(frame["total_amount"], taxi.frame["total_amount"])
    assert any("duration_minutes" in note for note in notes)
    assert "lpep_pickup_datetime" in taxi.frame.columns  # input untouched


def test_taxi_fares_follow_the_reference_sample():
    """Feb 2018 green-taxi rows of the reference pipeline: 2.56 mi in 10.65 min cost ~$12.7,
    9.6 mi in 22.8 min ~$35.8 (the trained-model check is in the serving contract tests)."""
    from sklearn.linear_model import LinearRegression

    taxi = load_builtin("taxi")
    frame, _ = engineer_features(taxi.frame, taxi.target)
    x = frame.drop(columns=[taxi.target])
    assert list(x.columns) == REFERENCE_FEATURES
    model = LinearRegression().fit(x, frame[taxi.target])
    reference = pd.DataFrame([[10.65, 1, 2.56], [22.8, 1, 9.6]], columns=REFERENCE_FEATURES)
    np.testing.assert_allclose(model.predict(reference), [12.72, 35.8], rtol=0.05)
    assert abs(model.coef_[1]) < 0.1  # riders do not change the fare


def test_engineer_parses_text_datetimes_and_other_datetimes():
    frame = pd.DataFrame(
        {
            "Pickup_Time": ["2024-01-01 08:00:00", "2024-01-02 09:30:00"],
            "DropOff_Time": ["2024-01-01 08:15:00", "2024-01-02 10:00:00"],
            "signup": pd.to_datetime(["2023-05-06 14:00", "2023-05-08 23:10"]),
            "x": [1.0, 2.0],
            "y": [0, 1],
        }
    )
    out, notes = engineer_features(frame, "y")
    # new features take the place of the columns they replace
    assert list(out.columns) == ["duration_minutes", "signup_hour", "signup_dayofweek", "x", "y"]
    assert out["duration_minutes"].tolist() == [15.0, 30.0]
    assert out["signup_hour"].tolist() == [14, 23]
    assert out["signup_dayofweek"].tolist() == [5, 0]  # Saturday, Monday
    assert out["signup_hour"].dtype == np.int64
    assert len(notes) == 2


def test_engineered_duration_takes_the_place_of_the_first_trip_time():
    times = pd.to_datetime(["2024-01-01 08:00", "2024-01-01 09:00"])
    frame = pd.DataFrame(
        {
            "a": [1, 2],
            "dropoff_at": times + pd.Timedelta(minutes=6),
            "b": [3.0, 4.0],
            "pickup_at": times,
            "y": [5.0, 6.0],
        }
    )
    out, _ = engineer_features(frame, "y")
    assert list(out.columns) == ["a", "duration_minutes", "b", "y"]
    assert out["duration_minutes"].tolist() == [6.0, 6.0]


def test_engineer_never_touches_target_and_leaves_plain_tables_alone():
    frame = pd.DataFrame(
        {"a": [1, 2], "label": ["x", "y"], "pickup_when": pd.to_datetime(["2024-01-01"] * 2)}
    )
    out, notes = engineer_features(frame, "pickup_when")
    pd.testing.assert_frame_equal(out, frame[["a", "label", "pickup_when"]])
    assert notes == []


def test_make_batch_same_columns_and_deterministic():
    for name in BUILTIN_DATASETS:
        base = load_builtin(name, rows=50).frame
        batch = make_batch(name, rows=200, seed=5)
        assert list(batch.columns) == list(base.columns)
        assert (batch.dtypes == base.dtypes).all()
        pd.testing.assert_frame_equal(batch, make_batch(name, rows=200, seed=5))
        assert not batch.equals(make_batch(name, rows=200, seed=6))
        target = load_builtin(name, rows=50).target
        no_target = make_batch(name, rows=10, include_target=False)
        assert target not in no_target.columns


def test_make_batch_taxi_shift_moves_means_and_keeps_the_fare_relation():
    clean, _ = engineer_features(make_batch("taxi", rows=5000, seed=1), "total_amount")
    shifted, _ = engineer_features(make_batch("taxi", rows=5000, seed=1, shift=1.0), "total_amount")
    for col in ("trip_distance", "passenger_count", "duration_minutes"):
        moved = (shifted[col].mean() - clean[col].mean()) / clean[col].std()
        assert 0.5 < moved < 2.0, col
    # the fare still follows base + per mile + per minute (+ extras that never go negative)
    meter = 2.5 + 2.85 * shifted["trip_distance"] + 0.11 * shifted["duration_minutes"]
    extra = shifted["total_amount"] - meter
    assert extra.min() >= 0.79  # MTA tax and improvement surcharge, less rounding
    assert extra.median() < 0.35 * meter.median()


def test_make_batch_taxi_outliers_are_extreme_but_valid():
    clean = make_batch("taxi", rows=2000, seed=2)
    dirty = make_batch("taxi", rows=2000, seed=2, outlier_fraction=0.05)
    assert dirty["trip_distance"].max() > 10 * clean["trip_distance"].max() / 2
    extreme = dirty["trip_distance"] > 1.5 * clean["trip_distance"].max()
    assert 50 <= extreme.sum() <= 100
    duration = dirty["lpep_dropoff_datetime"] - dirty["lpep_pickup_datetime"]
    assert (duration > pd.Timedelta(0)).all()
    assert dirty["passenger_count"].dtype == np.int64


@pytest.mark.parametrize("name", ["mammography", "iris"])
def test_make_batch_real_shift_and_outliers(name):
    data = load_builtin(name)
    features = [c for c in data.frame.columns if c != data.target]
    std = data.frame[features].std()
    batch = make_batch(name, rows=2000, shift=1.0, seed=3)
    moved = (batch[features].mean() - data.frame[features].mean()) / std
    assert moved.between(0.7, 1.3).mean() > 0.9
    assert set(batch[data.target].unique()) <= set(data.frame[data.target].unique())

    clean = make_batch(name, rows=1000, seed=4)
    dirty = make_batch(name, rows=1000, seed=4, outlier_fraction=0.1)
    changed = dirty[features].ne(clean[features])
    assert changed.any(axis=1).sum() == 100  # exactly 10% of the rows, one value each
    assert changed.sum(axis=1).max() == 1
    z = ((dirty[features] - data.frame[features].mean()) / std).abs()
    assert (z[changed] > 6).sum().sum() == 100
    assert (dirty[features] >= 0).all().all()
