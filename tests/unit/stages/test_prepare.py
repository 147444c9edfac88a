"""The prepare stage on built-in datasets and on users' tables, good and bad."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.data import load_builtin, make_batch, write_parquet
from mlops.errors import ConfigError, DataError, DatasetNotFoundError
from mlops.settings import Settings
from mlops.stages import PreparedData, prepare
from mlops.stages.prepare import load_split
from mlops.types import Task
from tests.conftest import make_settings

SPLITS = ("train", "validation", "test")


def _splits(prepared: PreparedData) -> dict[str, pd.DataFrame]:
    return {name: load_split(prepared, name) for name in SPLITS}


@pytest.mark.parametrize(
    ("dataset", "rows", "target", "task", "classes"),
    [
        ("taxi", 2000, "total_amount", Task.REGRESSION, []),
        ("mammography", None, "severity", Task.BINARY, [0, 1]),
        ("iris", None, "species", Task.MULTICLASS, [0, 1, 2]),
    ],
)
def test_builtin_splits_80_15_5(
    settings: Settings,
    dataset: str,
    rows: int | None,
    target: str,
    task: Task,
    classes: list[int],
) -> None:
    prepared = prepare(settings, dataset=dataset, rows=rows)
    total = len(load_builtin(dataset, rows=rows).frame)
    assert prepared.source == f"builtin:{dataset}"
    assert prepared.target == target
    assert prepared.task is task
    assert prepared.task_inferred is True
    assert prepared.classes == classes
    assert sum(prepared.rows.values()) == total
    for name, fraction in (("train", 0.80), ("validation", 0.15), ("test", 0.05)):
        assert abs(prepared.rows[name] / total - fraction) < 0.01, (name, prepared.rows)

    folder = Path(prepared.uri)
    assert folder.is_dir() and folder.is_relative_to(settings.work_dir.resolve() / "prepared")
    assert PreparedData.load(prepared.uri) == prepared
    frames = _splits(prepared)
    for name, frame in frames.items():
        assert len(frame) == prepared.rows[name]
        assert list(frame.columns) == [*prepared.features, target]  # target last
        assert frame[prepared.features].notna().all().all()
    assert target not in prepared.features
    # the splits partition the table: every row once, none lost or repeated
    source = load_builtin(dataset, rows=rows).frame
    together = pd.concat(frames.values(), ignore_index=True)
    np.testing.assert_array_equal(
        np.sort(together[target].to_numpy()), np.sort(source[target].to_numpy())
    )
    shared = [c for c in prepared.features if c in source.columns]
    assert shared
    for column in shared:
        np.testing.assert_array_equal(
            np.sort(together[column].to_numpy()), np.sort(source[column].to_numpy())
        )


def test_taxi_datetimes_become_duration(settings: Settings) -> None:
    prepared = prepare(settings, dataset="taxi", rows=2000)
    # the reference pipeline's order, so its CSV line `10.65,1,2.56` means 10.65 minutes
    assert prepared.features == ["duration_minutes", "passenger_count", "trip_distance"]
    assert any("duration_minutes" in note for note in prepared.notes)
    train = load_split(prepared, "train")
    assert (train["duration_minutes"] >= 1.0).all()


def test_prepare_is_deterministic_and_idempotent(settings: Settings, tmp_path: Path) -> None:
    first = prepare(settings, dataset="taxi", rows=2000)
    again = prepare(settings, dataset="taxi", rows=2000)
    assert again == first  # same digest, same folder: reused, not rewritten

    elsewhere = prepare(make_settings(tmp_path / "other"), dataset="taxi", rows=2000)
    assert elsewhere.digest == first.digest
    assert elsewhere.uri != first.uri
    for name in SPLITS:
        pd.testing.assert_frame_equal(load_split(elsewhere, name), load_split(first, name))


def test_other_seed_or_split_changes_digest(settings: Settings, tmp_path: Path) -> None:
    base = prepare(settings, dataset="iris")
    reseeded = prepare(make_settings(tmp_path / "seed", seed=7), dataset="iris")
    assert reseeded.digest != base.digest
    assert not load_split(reseeded, "test").equals(load_split(base, "test"))

    resplit = prepare(
        make_settings(tmp_path / "split", split={"train": 0.7, "validation": 0.2, "test": 0.1}),
        dataset="iris",
    )
    assert resplit.digest != base.digest
    assert resplit.rows == {"train": 105, "validation": 30, "test": 15}


def test_iris_stratified_every_class_in_every_split(settings: Settings) -> None:
    prepared = prepare(settings, dataset="iris")
    frames = _splits(prepared)
    for name, frame in frames.items():
        assert set(frame["species"]) == {0, 1, 2}, name
    assert frames["train"]["species"].value_counts().to_dict() == {0: 40, 1: 40, 2: 40}


def test_mammography_stratified_class_balance(settings: Settings) -> None:
    prepared = prepare(settings, dataset="mammography")
    frames = _splits(prepared)
    overall = pd.concat(frames.values())["severity"].mean()
    for name, frame in frames.items():
        assert abs(frame["severity"].mean() - overall) < 0.03, name


# ---------------------------------------------------------------- bring your own data


def _iris_named() -> pd.DataFrame:
    frame = load_builtin("iris").frame
    names = np.array(["setosa", "versicolor", "virginica"])
    return frame.assign(species=names[frame["species"].to_numpy()])


def test_byo_csv_regression_inferred(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "trips.csv"
    make_batch("taxi", rows=600, seed=1).to_csv(path, index=False)
    prepared = prepare(settings, data=str(path), target="total_amount")
    assert prepared.source == str(path)
    assert prepared.task is Task.REGRESSION
    assert prepared.task_inferred is True
    assert "fractional" in prepared.task_reason
    assert prepared.classes == []
    # text datetimes were parsed too, and the duration took their place
    assert prepared.features == ["duration_minutes", "passenger_count", "trip_distance"]
    assert sum(prepared.rows.values()) == 600


def test_byo_parquet_binary_inferred_with_text_labels(settings: Settings, tmp_path: Path) -> None:
    frame = load_builtin("mammography").frame
    frame = frame.assign(severity=np.where(frame["severity"] == 1, "malignant", "benign"))
    path = write_parquet(frame, tmp_path / "mammo.parquet")
    prepared = prepare(settings, data=str(path), target="severity")
    assert prepared.task is Task.BINARY
    assert prepared.task_inferred is True
    assert prepared.classes == ["benign", "malignant"]
    train = load_split(prepared, "train")
    assert set(train["severity"]) == {0, 1}
    assert train["severity"].dtype == np.int64


def test_byo_csv_multiclass_inferred(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "flowers.csv"
    _iris_named().to_csv(path, index=False)
    prepared = prepare(settings, data=str(path), target="species")
    assert prepared.task is Task.MULTICLASS
    assert prepared.classes == ["setosa", "versicolor", "virginica"]
    assert prepared.features == [
        "sepal_length_cm",
        "sepal_width_cm",
        "petal_length_cm",
        "petal_width_cm",
    ]
    for name, frame in _splits(prepared).items():
        assert set(frame["species"]) == {0, 1, 2}, name


def test_byo_explicit_task_is_recorded(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    load_builtin("iris").frame.to_csv(path, index=False)
    prepared = prepare(settings, data=str(path), target="species", task="multiclass")
    assert prepared.task is Task.MULTICLASS
    assert prepared.task_inferred is False
    assert "given explicitly" in prepared.task_reason

    as_regression = prepare(settings, data=str(path), target="species", task="regression")
    assert as_regression.task is Task.REGRESSION
    assert as_regression.digest != prepared.digest  # the task is part of the recipe


def test_byo_rows_without_target_are_dropped(settings: Settings, tmp_path: Path) -> None:
    frame = load_builtin("taxi", rows=300).frame
    frame.loc[[3, 10, 50], "total_amount"] = np.nan
    path = tmp_path / "gaps.csv"
    frame.to_csv(path, index=False)
    prepared = prepare(settings, data=str(path), target="total_amount")
    assert sum(prepared.rows.values()) == 297
    assert any("dropped 3 rows" in note for note in prepared.notes)


@pytest.mark.parametrize(
    ("task", "frame_name", "words"),
    [
        ("binary", "iris", ["binary", "species", "3"]),
        ("multiclass", "mammography", ["multiclass", "severity", "binary"]),
        ("regression", "iris-named", ["species", "not numeric", "regression"]),
    ],
)
def test_byo_explicit_task_mismatch(
    settings: Settings, tmp_path: Path, task: str, frame_name: str, words: list[str]
) -> None:
    frame = _iris_named() if frame_name == "iris-named" else load_builtin(frame_name).frame
    target = "severity" if frame_name == "mammography" else "species"
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        prepare(settings, data=str(path), target=target, task=task)
    message = str(info.value)
    for word in words:
        assert word in message
    assert "table.csv" in message


def test_unknown_task_name_is_refused(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="'classification'") as info:
        prepare(settings, dataset="iris", task="classification")
    assert "multiclass" in str(info.value)


# ---------------------------------------------------------------- bad inputs


def _csv(tmp_path: Path, name: str, frame: pd.DataFrame) -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def _table(rows: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "distance": rng.uniform(0.5, 10, rows).round(2),
            "passengers": rng.integers(1, 5, rows),
            "fare": rng.uniform(5, 50, rows).round(2),
        }
    )


def test_missing_target_column(settings: Settings, tmp_path: Path) -> None:
    path = _csv(tmp_path, "trips.csv", _table())
    with pytest.raises(DataError) as info:
        prepare(settings, data=path, target="far")
    message = str(info.value)
    assert "'far'" in message and path in message
    assert "did you mean 'fare'" in message
    assert "distance" in message  # lists the columns present


def test_target_required_with_data(settings: Settings, tmp_path: Path) -> None:
    path = _csv(tmp_path, "trips.csv", _table())
    with pytest.raises(DataError, match="--target is required") as info:
        prepare(settings, data=path)
    assert path in str(info.value)


def test_empty_table(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("distance,passengers,fare\n")
    with pytest.raises(DataError) as info:
        prepare(settings, data=str(path), target="fare")
    assert str(path) in str(info.value)
    assert "no rows" in str(info.value)


def test_zero_byte_file(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "nothing.csv"
    path.write_bytes(b"")
    with pytest.raises(DataError) as info:
        prepare(settings, data=str(path), target="fare")
    assert str(path) in str(info.value)


def test_unreadable_parquet(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"\x00\xffnot a parquet file at all\x13\x37" * 20)
    with pytest.raises(DataError) as info:
        prepare(settings, data=str(path), target="fare")
    assert str(path) in str(info.value)


def test_missing_file(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "absent.csv"
    with pytest.raises(DatasetNotFoundError) as info:
        prepare(settings, data=str(path), target="fare")
    assert str(path) in str(info.value)


def test_non_numeric_garbage_in_a_feature(settings: Settings, tmp_path: Path) -> None:
    frame = _table().astype({"distance": object})
    frame.loc[[4, 17], "distance"] = ["n/a km", "??"]
    path = _csv(tmp_path, "dirty.csv", frame)
    with pytest.raises(DataError) as info:
        prepare(settings, data=path, target="fare")
    message = str(info.value)
    assert "'distance'" in message and path in message
    assert "non-numeric" in message
    assert "n/a km" in message


def test_all_missing_feature_column(settings: Settings, tmp_path: Path) -> None:
    path = _csv(tmp_path, "hollow.csv", _table().assign(tip=np.nan))
    with pytest.raises(DataError) as info:
        prepare(settings, data=path, target="fare")
    message = str(info.value)
    assert "'tip'" in message and path in message
    assert "all missing" in message


def test_text_feature_is_refused(settings: Settings, tmp_path: Path) -> None:
    frame = _table().assign(city=["NYC", "Boston", "LA"] * 20)
    path = _csv(tmp_path, "cities.csv", frame)
    with pytest.raises(DataError) as info:
        prepare(settings, data=path, target="fare")
    assert "'city'" in str(info.value) and "text" in str(info.value)


def test_target_with_one_class(settings: Settings, tmp_path: Path) -> None:
    frame = _table().assign(label="yes")
    path = _csv(tmp_path, "oneclass.csv", frame.drop(columns="fare"))
    with pytest.raises(DataError) as info:
        prepare(settings, data=path, target="label")
    message = str(info.value)
    assert "'label'" in message and path in message
    assert "single class" in message


def test_constant_regression_target(settings: Settings, tmp_path: Path) -> None:
    path = _csv(tmp_path, "flat.csv", _table().assign(fare=12.5))
    with pytest.raises(DataError, match="constant") as info:
        prepare(settings, data=path, target="fare")
    assert path in str(info.value)


def test_too_few_rows(settings: Settings, tmp_path: Path) -> None:
    path = _csv(tmp_path, "tiny.csv", _table(rows=5))
    with pytest.raises(DataError, match="at least 20") as info:
        prepare(settings, data=path, target="fare")
    assert path in str(info.value)


def test_unknown_dataset_name(settings: Settings) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        prepare(settings, dataset="titanic")
    assert "'titanic'" in str(info.value)
    assert "taxi" in str(info.value)


def test_builtin_with_wrong_target(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="'species'"):
        prepare(settings, dataset="iris", target="petal_width_cm")


@pytest.mark.parametrize("both", [True, False])
def test_exactly_one_of_dataset_and_data(settings: Settings, tmp_path: Path, both: bool) -> None:
    path = _csv(tmp_path, "t.csv", _table())
    kwargs = {"dataset": "iris", "data": path, "target": "fare"} if both else {}
    with pytest.raises(ConfigError, match="exactly one of --dataset"):
        prepare(settings, **kwargs)


def test_failed_prepare_writes_nothing(settings: Settings, tmp_path: Path) -> None:
    path = _csv(tmp_path, "oneclass.csv", _table().assign(fare=1).astype({"fare": str}))
    with pytest.raises(DataError):
        prepare(settings, data=path, target="fare")
    assert not (settings.work_dir / "prepared").exists() or not any(
        (settings.work_dir / "prepared").iterdir()
    )


def test_metadata_is_plain_json(settings: Settings) -> None:
    prepared = prepare(settings, dataset="iris")
    raw = json.loads((Path(prepared.uri) / "metadata.json").read_text())
    assert raw["digest"] == prepared.digest
    assert raw["task"] == "multiclass"
    assert raw["rows"] == prepared.rows
