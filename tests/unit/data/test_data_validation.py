"""validate_table, coerce_features, infer_task and encode_target."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlops.data import (
    MIN_ROWS,
    coerce_features,
    encode_target,
    engineer_features,
    infer_task,
    load_builtin,
    validate_table,
)
from mlops.errors import DataError
from mlops.types import Task

SOURCE = "data/trips.csv"


def good_frame(rows: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "trip_distance": rng.uniform(0.5, 10, rows),
            "passenger_count": rng.integers(1, 5, rows),
            "total_amount": rng.uniform(5, 50, rows),
        }
    )


def raises(frame: pd.DataFrame, target: str = "total_amount", **kwargs) -> str:
    with pytest.raises(DataError) as info:
        validate_table(frame, target, source=SOURCE, **kwargs)
    return str(info.value)


@pytest.mark.parametrize("name", ["taxi", "mammography", "iris"])
def test_builtins_are_valid(name):
    data = load_builtin(name)
    validate_table(data.frame, data.target, source=name, task=data.task)
    validate_table(data.frame, data.target, source=name)  # inferred task
    frame, _ = engineer_features(data.frame, data.target)
    validate_table(frame, data.target, source=name)


def test_taxi_csv_with_text_datetimes_is_valid(tmp_path):
    frame = load_builtin("taxi", rows=100).frame
    frame.to_csv(tmp_path / "taxi.csv", index=False)
    text = pd.read_csv(tmp_path / "taxi.csv")
    assert text["lpep_pickup_datetime"].dtype == object
    validate_table(text, "total_amount", source="taxi.csv")
    engineered, _ = engineer_features(text, "total_amount")
    assert "duration_minutes" in engineered.columns


def test_empty_table():
    message = raises(good_frame().iloc[:0])
    assert SOURCE in message and "no rows" in message


def test_no_columns():
    assert "no columns" in raises(pd.DataFrame(index=range(5)))


def test_missing_target_lists_columns_and_suggests_flag():
    message = raises(good_frame(), target="total_amout")
    assert "'total_amout'" in message and SOURCE in message
    assert "trip_distance, passenger_count, total_amount" in message
    assert "did you mean 'total_amount'" in message
    assert "--target" in message


def test_target_entirely_missing():
    frame = good_frame().assign(total_amount=np.nan)
    message = raises(frame)
    assert "'total_amount'" in message and "missing" in message


def test_only_target_column():
    assert "only the target column" in raises(good_frame()[["total_amount"]])


def test_all_nan_feature_is_named():
    frame = good_frame().assign(tip_amount=np.nan)
    message = raises(frame)
    assert "'tip_amount'" in message and SOURCE in message and "drop the column" in message


def test_numeric_column_with_garbage_lists_values_and_rows():
    frame = good_frame()
    frame["trip_distance"] = frame["trip_distance"].astype(object)
    frame.loc[16, "trip_distance"] = "abc"
    frame.loc[39, "trip_distance"] = "x"
    message = raises(frame)
    assert (
        "column 'trip_distance' in data/trips.csv has non-numeric values "
        "('abc' at row 17, 'x' at row 40); clean them or drop the column"
    ) == message


def test_garbage_listing_is_capped_at_five():
    frame = good_frame()
    frame["trip_distance"] = frame["trip_distance"].astype(object)
    for i in range(8):
        frame.loc[i, "trip_distance"] = f"bad{i}"
    message = raises(frame)
    assert "'bad4' at row 5" in message and "bad5" not in message
    assert "and 3 more" in message


def test_text_feature_is_not_supported_yet():
    frame = good_frame().assign(vendor=["Creative Mobile", "VeriFone"] * 20)
    message = raises(frame)
    assert "'vendor'" in message and "text/categorical features are not supported yet" in message
    assert "encode it as numbers or drop the column" in message


def test_several_bad_columns_are_reported_together():
    frame = good_frame().assign(vendor=["a", "b"] * 20, empty=np.nan)
    message = raises(frame)
    assert message.startswith("2 feature columns of data/trips.csv cannot be used")
    assert "'vendor'" in message and "'empty'" in message


def test_infinite_feature():
    frame = good_frame()
    frame.loc[3, "trip_distance"] = np.inf
    message = raises(frame)
    assert "'trip_distance'" in message and "infinite" in message and "row 4" in message


def test_single_class_target():
    frame = good_frame().assign(label=1)
    message = raises(frame.drop(columns="total_amount"), target="label", task=Task.BINARY)
    assert "'label'" in message and "single class" in message


def test_single_class_text_target():
    frame = good_frame().assign(label="yes").drop(columns="total_amount")
    assert "single class" in raises(frame, target="label")


def test_constant_regression_target():
    message = raises(good_frame().assign(total_amount=7.5))
    assert "'total_amount'" in message and "constant" in message


def test_binary_task_with_three_classes():
    frame = good_frame().assign(label=[0, 1, 2, 1] * 10).drop(columns="total_amount")
    assert "3 classes but the task is binary" in raises(frame, target="label", task=Task.BINARY)


def test_regression_task_with_text_target():
    frame = good_frame().assign(total_amount=["cheap", "dear"] * 20)
    message = raises(frame, task=Task.REGRESSION)
    assert "'total_amount'" in message and "not numeric" in message
    assert "'cheap' at row 1" in message


def test_too_few_rows_after_dropping_missing_targets():
    frame = good_frame(30)
    frame.loc[:14, "total_amount"] = np.nan
    message = raises(frame)
    assert "only 15 rows" in message and f"at least {MIN_ROWS}" in message
    validate_table(good_frame(MIN_ROWS), "total_amount", source=SOURCE)


def test_coerce_features():
    frame = pd.DataFrame(
        {
            "as_text": ["1.5", " 2", None, "3e2"],
            "flag": [True, False, True, True],
            "nullable": pd.array([1, 2, None, 4], dtype="Int64"),
            "whole": pd.array([1, 2, 3, 4], dtype="Int64"),
            "words": ["a", "b", "c", "d"],
            "target": ["1", "0", "1", "0"],
        }
    )
    out = coerce_features(frame, "target")
    assert out["as_text"].dtype == np.float64
    assert out["as_text"].tolist()[:2] == [1.5, 2.0] and np.isnan(out["as_text"][2])
    assert out["flag"].dtype == np.int64 and out["flag"].tolist() == [1, 0, 1, 1]
    assert out["nullable"].dtype == np.float64
    assert out["whole"].dtype == np.int64
    assert out["words"].tolist() == ["a", "b", "c", "d"]
    pd.testing.assert_series_equal(out["target"], frame["target"])
    assert frame["as_text"].dtype == object  # input untouched


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (["yes", "no", "yes", None], Task.BINARY),
        (["a", "b", "c"], Task.MULTICLASS),
        ([True, False, True], Task.BINARY),
        ([0, 1] * 50, Task.BINARY),
        ([0.0, 1.0, np.nan] * 30, Task.BINARY),
        ([5, 7] * 30, Task.BINARY),
        ([0, 1, 2] * 50, Task.MULTICLASS),
        ([1, 2, 3, 4] * 3, Task.MULTICLASS),  # tiny table of class codes
        (["0", "1", "2"] * 30, Task.MULTICLASS),
        ([3, 17, 42] * 4, Task.REGRESSION),  # 3 values in 12 rows, not codes
        ([0, 1, 2, 3], Task.REGRESSION),  # each code seen once
        (list(range(25)) * 40, Task.REGRESSION),  # too many distinct values
        (np.linspace(0, 10, 200).tolist(), Task.REGRESSION),
        ([1.5, 2.5] * 40, Task.REGRESSION),
    ],
)
def test_infer_task(values, task):
    inferred, reason = infer_task(pd.Series(values, name="y"))
    assert inferred is task
    assert "'y'" in reason and reason.count(".") <= 1


def test_infer_task_on_builtins():
    for name in ("taxi", "mammography", "iris"):
        data = load_builtin(name)
        assert infer_task(data.frame[data.target])[0] is data.task


def test_infer_task_on_categorical():
    series = pd.Series(pd.Categorical(["x", "y", "z", "x"]), name="c")
    assert infer_task(series)[0] is Task.MULTICLASS


def test_encode_classification_target():
    target = pd.Series(["dog", "cat", "bird", "cat"], name="animal", index=[10, 11, 12, 13])
    codes, labels = encode_target(target, Task.MULTICLASS)
    assert labels == ["bird", "cat", "dog"]
    assert codes.tolist() == [2, 1, 0, 1]
    assert codes.dtype == np.int64
    assert list(codes.index) == [10, 11, 12, 13]
    assert [labels[c] for c in codes] == target.tolist()


def test_encode_numeric_labels_are_plain_json_values():
    codes, labels = encode_target(pd.Series(np.array([4.0, 2.0, 4.0]), name="y"), Task.BINARY)
    assert labels == [2, 4] and all(type(v) is int for v in labels)
    assert codes.tolist() == [1, 0, 1]
    json.dumps(labels)
    _, bools = encode_target(pd.Series([True, False]), Task.BINARY)
    assert bools == [False, True]
    _, mixed = encode_target(pd.Series(pd.Categorical(["b", "a"])), Task.BINARY)
    assert mixed == ["a", "b"]
    _, numbers = encode_target(pd.Series(np.array([3, 1, 2], dtype="int32")), Task.MULTICLASS)
    assert numbers == [1, 2, 3] and json.dumps(numbers) == "[1, 2, 3]"


def test_encode_regression_target():
    values, labels = encode_target(pd.Series([1, 2, 3], name="fare"), Task.REGRESSION)
    assert values.dtype == np.float64 and values.tolist() == [1.0, 2.0, 3.0]
    assert values.name == "fare" and labels == []
    values, _ = encode_target(pd.Series(["1.5", "2"], name="fare"), Task.REGRESSION)
    assert values.tolist() == [1.5, 2.0]


def test_encode_errors_name_the_target():
    with pytest.raises(DataError, match="'fare' is not numeric"):
        encode_target(pd.Series(["a", "b"], name="fare"), Task.REGRESSION)
    with pytest.raises(DataError, match="'label' has 1 missing values"):
        encode_target(pd.Series([1, None, 0], name="label"), Task.BINARY)
    with pytest.raises(DataError, match="'label' has 3 classes but the task is binary"):
        encode_target(pd.Series([1, 2, 0], name="label"), Task.BINARY)
