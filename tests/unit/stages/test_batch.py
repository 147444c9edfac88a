"""The batch-inference stage on a real MLflow store with the session's trained taxi model.

Clean batches are predicted exactly as the model's own ``predict`` does, in the model's column
order; batches with outliers, drift, missing columns or text in numeric columns fail before
anything is written; CSV chunks, Parquet row groups and S3 give the same predictions.
"""

from __future__ import annotations

import re
from pathlib import Path

import boto3
import mlflow
import numpy as np
import pandas as pd
import pytest

from mlops.data import engineer_features, make_batch
from mlops.errors import BatchCheckError, ConfigError, DataError, ModelNotFoundError
from mlops.monitoring.outliers import OutlierCounter, outlier_bounds
from mlops.settings import Settings
from mlops.stages import batch as batch_stage
from mlops.stages._batch_checks import UniformSample
from mlops.stages.batch import BatchResult, inference_ids, run_batch
from mlops.tracking import Tags, batch_experiment, connect
from tests.conftest import AWS_TEST_CREDENTIALS

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def taxi(trained_taxi: tuple[Settings, str]) -> tuple[Settings, str, list[str]]:
    """The session's taxi store, a reference to its version and the model's feature order."""
    settings, version = trained_taxi
    connect(settings)
    info = mlflow.models.get_model_info(f"models:/taxi/{version}")
    features = list(info.metadata["mlops"]["features"])
    return settings, f"taxi/{version}", features


def _with_batch(settings: Settings, **batch: object) -> Settings:
    return settings.model_copy(update={"batch": settings.batch.model_copy(update=batch)})


def _expected(settings: Settings, ref: str, raw: pd.DataFrame, features: list[str]) -> np.ndarray:
    """The model's own predictions of ``raw`` (features derived as in training)."""
    connect(settings)
    model = mlflow.xgboost.load_model(f"models:/{ref}")
    frame, _ = engineer_features(raw, "total_amount")
    return np.asarray(model.predict(frame[features]), dtype="float64")


def _runs(settings: Settings) -> list[mlflow.entities.Run]:
    client = connect(settings)
    experiment = client.get_experiment_by_name(batch_experiment("taxi"))
    assert experiment is not None
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------ clean


def test_clean_batch_predicts_like_the_model_whatever_the_column_order(
    taxi: tuple[Settings, str, list[str]], tmp_path: Path
) -> None:
    settings, ref, features = taxi
    raw = make_batch("taxi", rows=1200, seed=3)
    raw.insert(0, "trip_id", np.arange(1000, 1000 + len(raw)))
    shuffled = raw[list(reversed(raw.columns))]  # target first, ids last
    source = tmp_path / "in.parquet"
    shuffled.to_parquet(source, index=False)
    out = tmp_path / "out" / "predictions.parquet"

    result = run_batch(settings, ref, str(source), str(out))

    assert isinstance(result, BatchResult)
    assert result.rows == 1200 and result.outlier_rows <= 12 and result.drift_checked
    assert not result.drifted and result.experiment == "taxi/batch"
    predictions = pd.read_parquet(out)
    assert list(predictions.columns) == ["inference_id", "total_amount", "trip_id", "prediction"]
    assert predictions["inference_id"].is_unique
    assert all(_UUID.match(i) for i in predictions["inference_id"])
    assert [int(i[-12:], 16) for i in predictions["inference_id"]] == list(range(1200))
    assert predictions["trip_id"].tolist() == raw["trip_id"].tolist()
    expected = _expected(settings, ref, raw, features)
    np.testing.assert_array_equal(predictions["prediction"].to_numpy(), expected)
    assert _files(out.parent) == ["predictions.parquet"]  # no temporary file left behind

    run = connect(settings).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[Tags.STAGE] == "batch-inference"
    assert run.data.tags[Tags.BATCH_OUTCOME] == "succeeded"
    assert run.data.tags[Tags.BATCH_INPUT] == str(source)
    assert run.data.params["model_version"] == ref.split("/")[1]
    assert run.data.params["chunk_rows"] == str(settings.batch.chunk_rows)
    assert run.data.metrics["rows"] == 1200
    assert {"outlier_share", "drift_share", "duration_s"} <= set(run.data.metrics)


def test_engineered_features_in_any_order_as_csv(
    taxi: tuple[Settings, str, list[str]], tmp_path: Path
) -> None:
    settings, ref, features = taxi
    raw = make_batch("taxi", rows=300, seed=4, include_target=False)
    frame, _ = engineer_features(raw, "total_amount")
    shuffled = frame[[features[2], features[0], features[1]]].assign(note="x")
    source = tmp_path / "features.csv"
    shuffled.to_csv(source, index=False)
    out = tmp_path / "predictions.csv"

    run_batch(settings, ref, str(source), str(out))

    predictions = pd.read_csv(out)
    assert list(predictions.columns) == ["inference_id", "prediction"]  # `note` is dropped
    np.testing.assert_allclose(
        predictions["prediction"].to_numpy(), _expected(settings, ref, raw, features), rtol=1e-12
    )


def test_csv_chunks_give_the_same_predictions_as_one_chunk(
    taxi: tuple[Settings, str, list[str]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings, ref, _ = taxi
    raw = make_batch("taxi", rows=1000, seed=5)
    source = tmp_path / "in.csv.gz"
    raw.to_csv(source, index=False)

    whole = run_batch(settings, ref, str(source), str(tmp_path / "whole.parquet"))
    with caplog.at_level("INFO", logger="mlops.stages"):
        chunked = run_batch(
            _with_batch(settings, chunk_rows=137), ref, str(source), str(tmp_path / "parts.csv")
        )

    assert whole.chunks == 1 and chunked.chunks == 8 and chunked.rows == 1000
    one = pd.read_parquet(tmp_path / "whole.parquet")
    parts = pd.read_csv(tmp_path / "parts.csv", float_precision="round_trip")
    np.testing.assert_array_equal(one["prediction"].to_numpy(), parts["prediction"].to_numpy())
    assert [int(i[-12:], 16) for i in parts["inference_id"]] == list(range(1000))
    assert set(one["inference_id"]).isdisjoint(parts["inference_id"])  # ids differ per run
    progress = [r for r in caplog.records if getattr(r, "mlops_event", "") == "progress"]
    assert [r.mlops_rows for r in progress if r.mlops_phase == "predict"][-1] == 1000
    assert len(progress) == 16  # one line per chunk, checked and predicted


def test_a_failure_while_predicting_leaves_no_output(
    taxi: tuple[Settings, str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, ref, _ = taxi
    source = tmp_path / "in.parquet"
    make_batch("taxi", rows=400, seed=6).to_parquet(source, index=False)
    out = tmp_path / "out" / "predictions.parquet"
    out.parent.mkdir()
    out.write_bytes(b"yesterday's predictions")
    calls = {"n": 0}
    real = batch_stage._Predictor.__call__

    def flaky(self: object, features: pd.DataFrame) -> dict[str, np.ndarray]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker lost")
        return real(self, features)  # type: ignore[arg-type]

    monkeypatch.setattr(batch_stage._Predictor, "__call__", flaky)
    with pytest.raises(RuntimeError, match="worker lost"):
        run_batch(_with_batch(settings, chunk_rows=100), ref, str(source), str(out))
    assert _files(out.parent) == ["predictions.parquet"]
    assert out.read_bytes() == b"yesterday's predictions"  # the old file is untouched
    run = _runs(settings)[0]
    assert run.info.status == "FAILED" and run.data.tags[Tags.BATCH_OUTCOME] == "error"


# ------------------------------------------------------------------------------ checks


def test_outliers_fail_the_batch_and_nothing_is_written(
    taxi: tuple[Settings, str, list[str]], tmp_path: Path
) -> None:
    settings, ref, _ = taxi
    source = tmp_path / "in.parquet"
    make_batch("taxi", rows=1000, outlier_fraction=0.05, seed=7).to_parquet(source, index=False)
    out = tmp_path / "out" / "predictions.parquet"

    with pytest.raises(BatchCheckError) as caught:
        run_batch(_with_batch(settings, check_drift=False), ref, str(source), str(out))

    exc = caught.value
    assert exc.reason == "outliers"
    assert exc.details["outlier_share"] > settings.batch.max_outlier_share
    assert "trip_distance" in exc.details["outlier_columns"]
    assert str(source) in str(exc) and "batch.max_outlier_share" in str(exc)
    assert "No predictions were written" in str(exc)
    assert not out.parent.exists()
    run = connect(settings).get_run(exc.details["run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags[Tags.BATCH_OUTCOME] == "failed"
    assert run.data.metrics["outlier_share"] == pytest.approx(exc.details["outlier_share"])
    checks = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/batch/checks.json")
    assert checks["outcome"] == "failed" and checks["outliers"]["outlier_rows"] > 10

    # 5% of trips 50 times as long also move the distributions: both reasons are given
    with pytest.raises(BatchCheckError) as both:
        run_batch(settings, ref, str(source), str(out))
    assert both.value.reason == "drift+outliers"
    assert "drift:" in str(both.value) and "outliers:" in str(both.value)
    assert not out.parent.exists()


def test_drift_fails_the_batch_with_the_drifted_features(
    taxi: tuple[Settings, str, list[str]], tmp_path: Path
) -> None:
    settings, ref, _ = taxi
    source = tmp_path / "shifted.csv"
    make_batch("taxi", rows=1500, shift=1.0, seed=8).to_csv(source, index=False)
    out = tmp_path / "predictions.csv"

    with pytest.raises(BatchCheckError) as caught:
        run_batch(settings, ref, str(source), str(out))

    exc = caught.value
    assert exc.reason == "drift"
    assert "trip_distance" in exc.details["drifted_features"]
    assert exc.details["drift_share"] >= settings.monitoring.drift_share
    assert "monitoring.drift_share" in str(exc) and "trip_distance" in str(exc)
    assert _files(tmp_path) == ["shifted.csv"]
    run = connect(settings).get_run(exc.details["run_id"])
    assert run.data.tags[Tags.DRIFT_DETECTED] == "true"
    assert "trip_distance" in run.data.tags[Tags.DRIFTED_FEATURES]
    assert "drift_score_trip_distance" in run.data.metrics


def test_drift_check_can_be_turned_off(
    taxi: tuple[Settings, str, list[str]], tmp_path: Path
) -> None:
    settings, ref, _ = taxi
    source = tmp_path / "shifted.parquet"
    make_batch("taxi", rows=300, shift=1.0, seed=8).to_parquet(source, index=False)
    relaxed = _with_batch(settings, check_drift=False, max_outlier_share=0.2)
    result = run_batch(relaxed, ref, str(source), str(tmp_path / "p.parquet"))
    assert not result.drift_checked and result.rows == 300


def test_missing_column_is_one_clear_error(
    taxi: tuple[Settings, str, list[str]], tmp_path: Path
) -> None:
    settings, ref, _ = taxi
    source = tmp_path / "no-distance.csv"
    make_batch("taxi", rows=50, seed=9).drop(columns=["trip_distance"]).to_csv(source, index=False)
    out = tmp_path / "out.parquet"
    with pytest.raises(DataError) as caught:
        run_batch(settings, ref, str(source), str(out))
    message = str(caught.value)
    assert str(source) in message and "lacks the column trip_distance" in message
    assert "add it to the input" in message
    assert _files(tmp_path) == ["no-distance.csv"]


def test_text_in_a_numeric_column_is_one_clear_error(
    taxi: tuple[Settings, str, list[str]], tmp_path: Path
) -> None:
    settings, ref, _ = taxi
    frame = make_batch("taxi", rows=300, seed=10).astype(
        {"trip_distance": object, "passenger_count": object}
    )
    frame.loc[250, "trip_distance"] = "2,5 miles"
    frame.loc[251, "passenger_count"] = "two"
    source = tmp_path / "typo.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "out.csv"
    with pytest.raises(DataError) as caught:
        run_batch(_with_batch(settings, chunk_rows=100), ref, str(source), str(out))
    message = str(caught.value)
    assert message.count("\n") == 0
    assert str(source) in message and "text in numeric columns" in message
    assert "trip_distance ('2,5 miles' at row 251)" in message
    assert "passenger_count ('two' at row 252)" in message
    assert "nothing was written" in message
    assert _files(tmp_path) == ["typo.csv"]


def test_unknown_model_and_alias_list_what_exists(
    taxi: tuple[Settings, str, list[str]], tmp_path: Path
) -> None:
    settings, _, _ = taxi
    source = tmp_path / "in.csv"
    make_batch("taxi", rows=20, seed=1).to_csv(source, index=False)
    with pytest.raises(ModelNotFoundError, match=r"'taxy' does not exist \(registered: .*taxi"):
        run_batch(settings, "taxy", str(source), str(tmp_path / "o.csv"))
    with pytest.raises(ModelNotFoundError, match=r"no alias 'champion' \(aliases: challenger"):
        run_batch(settings, "taxi", str(source), str(tmp_path / "o.csv"))
    with pytest.raises(ModelNotFoundError, match="no version 99"):
        run_batch(settings, "models:/taxi/99", str(source), str(tmp_path / "o.csv"))
    with pytest.raises(ConfigError, match="--output .* no supported suffix"):
        run_batch(settings, "taxi@challenger", str(source), str(tmp_path / "o.txt"))
    with pytest.raises(DataError, match="does not exist"):
        run_batch(settings, "taxi@challenger", str(tmp_path / "none.csv"), str(tmp_path / "o.csv"))
    assert _files(tmp_path) == ["in.csv"]


# ------------------------------------------------------------------------------ S3


@pytest.mark.moto
def test_s3_input_and_output(
    taxi: tuple[Settings, str, list[str]],
    tmp_path: Path,
    s3_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, ref, features = taxi
    for name, value in AWS_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="batches")
    raw = make_batch("taxi", rows=500, seed=12)
    local = tmp_path / "in.parquet"
    raw.to_parquet(local, index=False)
    s3.upload_file(str(local), "batches", "in/2024-02.parquet")
    on_s3 = settings.model_copy(
        update={"aws": settings.aws.model_copy(update={"endpoint_url": s3_endpoint})}
    )

    result = run_batch(
        _with_batch(on_s3, chunk_rows=128),
        ref,
        "s3://batches/in/2024-02.parquet",
        "s3://batches/out/2024-02.csv",
    )

    assert result.rows == 500 and result.chunks == 4
    s3.download_file("batches", "out/2024-02.csv", str(tmp_path / "out.csv"))
    predictions = pd.read_csv(tmp_path / "out.csv")
    np.testing.assert_allclose(
        predictions["prediction"].to_numpy(), _expected(settings, ref, raw, features), rtol=1e-12
    )
    with pytest.raises(DataError, match="s3://batches/in/none.parquet does not exist"):
        run_batch(on_s3, ref, "s3://batches/in/none.parquet", "s3://batches/out/x.csv")
    with pytest.raises(DataError, match="bucket 'nowhere' does not exist"):
        run_batch(on_s3, ref, "s3://batches/in/2024-02.parquet", "s3://nowhere/x.csv")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="batches")["Contents"]]
    assert sorted(keys) == ["in/2024-02.parquet", "out/2024-02.csv"]


# ----------------------------------------------------------------------- pure pieces


def test_inference_ids_are_deterministic_uuids_carrying_the_row() -> None:
    first = inference_ids("run-a", 0, 3)
    assert list(first) == list(inference_ids("run-a", 0, 3))
    assert all(_UUID.match(i) for i in first)
    assert [int(i[-12:], 16) for i in inference_ids("run-a", 4095, 2)] == [4095, 4096]
    assert set(first).isdisjoint(inference_ids("run-b", 0, 3))


def test_outlier_bounds_and_counter() -> None:
    statistics = {
        "features": [
            {"name": "a", "numerical_statistics": {"min": 0.0, "max": 10.0}},
            {"name": "b", "numerical_statistics": {"min": 5.0, "max": 5.0}},
            {"name": "c", "string_statistics": {}},
        ]
    }
    bounds = outlier_bounds(statistics, ["a", "b", "c"], margin=0.5)
    assert bounds == {"a": (-5.0, 15.0), "b": (2.5, 7.5)}
    counter = OutlierCounter(bounds)
    counter.add(pd.DataFrame({"a": [1.0, 16.0, np.nan, np.inf], "b": [5.0, 9.0, 5.0, 5.0]}))
    counter.add(pd.DataFrame({"a": [-6.0], "b": [5.0]}))
    assert (counter.rows, counter.outlier_rows) == (5, 3)
    assert counter.by_column == {"a": 3, "b": 1}
    assert counter.share == pytest.approx(0.6)


def test_uniform_sample_over_chunks_is_bounded_seeded_and_spans_every_chunk() -> None:
    def draw(seed: int) -> pd.DataFrame:
        sample = UniformSample(100, seed)
        for start in range(0, 1000, 50):
            sample.add(pd.DataFrame({"row": np.arange(start, start + 50)}))
        assert sample.seen == 1000
        return sample.frame

    first = draw(1)
    assert len(first) == 100 and first["row"].is_unique
    assert first["row"].tolist() == draw(1)["row"].tolist()
    assert first["row"].tolist() != draw(2)["row"].tolist()
    assert first["row"].min() < 200 and first["row"].max() >= 800  # not just the first rows
