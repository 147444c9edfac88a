"""Retraining state on the registered model: the cooldown, the source, the data watch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mlops.errors import ConfigError, ModelNotFoundError
from mlops.settings import Settings
from mlops.stages.retrain import (
    check_data_source,
    configured_source,
    cooldown_check,
    mark_retraining_started,
    model_name_of,
    record_data_digest,
    retraining_data,
)
from mlops.tracking import Tags, connect
from tests.conftest import make_settings

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLflow store for the module (creating one takes seconds); tests use own models."""
    return tmp_path_factory.mktemp("retrain-store")


def test_cooldown_is_recorded_on_the_registered_model_and_expires(store: Path) -> None:
    settings = make_settings(store, retraining={"cooldown": "6h"})
    assert cooldown_check(settings, "cool", T0) == (
        True,
        "cool is not registered yet: no retraining to cool down from",
    )
    mark_retraining_started(settings, "cool", "drift (event 42)", T0)

    tags = connect(settings).get_registered_model("cool").tags
    assert tags[Tags.LAST_RETRAINING_AT] == "2026-03-01T12:00:00+00:00"
    assert tags[Tags.LAST_RETRAINING_REASON] == "drift (event 42)"

    # a fresh Settings object (a restarted worker) reads the same state from the store
    again = make_settings(store, retraining={"cooldown": "6h"})
    allowed, why = cooldown_check(again, "cool", T0 + timedelta(hours=5, minutes=59))
    assert not allowed
    assert why.startswith("cooldown until 2026-03-01T18:00:00+00:00")
    assert "drift (event 42)" in why
    allowed, why = cooldown_check(again, "cool", T0 + timedelta(hours=6))
    assert allowed and "more than 6h ago" in why
    # a shorter cooldown in the settings applies at once
    assert cooldown_check(
        make_settings(store, retraining={"cooldown": "1h"}), "cool", T0 + timedelta(hours=2)
    )[0]


def test_registered_model_without_a_retraining_may_retrain(store: Path) -> None:
    settings = make_settings(store)
    connect(settings).create_registered_model("fresh")
    assert cooldown_check(settings, "fresh") == (True, "no retraining of fresh recorded before")


def test_model_name_of_accepts_the_event_resource_id() -> None:
    assert model_name_of("mlops.model.taxi") == "taxi"
    assert model_name_of("taxi") == "taxi"


def test_configured_source(tmp_path: Path) -> None:
    assert configured_source(make_settings(tmp_path), "iris").dataset == "iris"
    default = configured_source(make_settings(tmp_path), "my-model")
    assert (default.dataset, default.source) == ("taxi", "builtin:taxi")
    chosen = configured_source(
        make_settings(tmp_path, retraining={"dataset": "taxi", "rows": 900}), "iris"
    )
    assert (chosen.dataset, chosen.rows, chosen.source) == ("taxi", 900, "builtin:taxi?rows=900")
    table = configured_source(
        make_settings(tmp_path, retraining={"data": "s3://b/k.parquet", "target": "y"}), "iris"
    )
    assert table.pipeline_arguments() == {
        "dataset": None,
        "data": "s3://b/k.parquet",
        "target": "y",
        "task": None,
        "rows": None,
    }
    with pytest.raises(ConfigError, match="retraining.target is not set"):
        configured_source(make_settings(tmp_path, retraining={"data": "x.csv"}), "iris")
    with pytest.raises(ConfigError, match="no retraining source"):
        configured_source(make_settings(tmp_path, retraining={"dataset": None}), "my-model")


def test_retraining_data_without_labelled_capture_is_the_configured_source(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, retraining={"include_labelled_capture": False})
    assert retraining_data(settings, "iris") == configured_source(settings, "iris")


def test_data_watch_sees_a_changed_table(store: Path, tmp_path: Path) -> None:
    table = tmp_path / "fares.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0.5, 1.0, 1.5]}).to_csv(table, index=False)
    settings: Settings = make_settings(store, retraining={"data": str(table), "target": "y"})
    with pytest.raises(ModelNotFoundError, match="train it first"):
        check_data_source(settings, "watched")
    connect(settings).create_registered_model("watched")

    first = check_data_source(settings, "watched")
    assert (first.first_look, first.changed, first.old_digest) == (True, False, None)
    assert first.source == str(table)
    record_data_digest(settings, "watched", first.new_digest)

    same = check_data_source(settings, "watched")
    assert (same.first_look, same.changed, same.new_digest) == (False, False, first.new_digest)

    pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [0.5, 1.0, 1.5, 2.0]}).to_csv(table, index=False)
    changed = check_data_source(settings, "watched")
    assert changed.changed and not changed.first_look
    assert changed.old_digest == first.new_digest != changed.new_digest
    assert changed.event_payload() == {
        "source": str(table),
        "old_digest": first.new_digest,
        "new_digest": changed.new_digest,
        "reason": "data",
    }
    assert connect(settings).get_registered_model("watched").tags[Tags.DATA_WATCH_DIGEST] == (
        first.new_digest
    )  # checking writes nothing


def _capture_line(event_id: str, row: str, prediction: str, when: float) -> str:
    """One capture record in SageMaker's format (DESIGN.md)."""
    import json
    import time

    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": "text/csv",
                    "mode": "INPUT",
                    "data": row,
                    "encoding": "CSV",
                },
                "endpointOutput": {
                    "observedContentType": "text/csv; charset=utf-8",
                    "mode": "OUTPUT",
                    "data": prediction,
                    "encoding": "CSV",
                },
            },
            "eventMetadata": {
                "eventId": event_id,
                "inferenceTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
            },
            "eventVersion": "0",
        }
    )


def test_retraining_data_adds_the_labelled_capture_of_the_prod_endpoint(
    tmp_path: Path,
) -> None:
    import time

    from mlops.capture import write_ground_truth
    from mlops.capture.format import capture_file_rel

    source = tmp_path / "table.csv"
    frame = pd.DataFrame({"a": [float(i) for i in range(40)], "b": [1.0] * 40})
    frame["y"] = 2 * frame["a"] + frame["b"]
    frame.to_csv(source, index=False)
    settings = make_settings(tmp_path, retraining={"data": str(source), "target": "y"})
    # nothing captured yet: the configured source as is
    plain = retraining_data(settings, "fares")
    assert plain.data == str(source) and plain.labelled_rows == 0
    assert plain.notes == [
        f"no capture of endpoint fares-prod under {settings.capture_destination}"
    ]

    now = time.time()
    capture = Path(settings.capture_destination)
    lines = [
        _capture_line("e1", "100.5,2\n", "203", now),
        _capture_line("e2", "200,3\n", "403", now),
        _capture_line("e3", "300,4\n", "604", now),  # never labelled
        _capture_line("e4", "400,5\n", "805", now),
    ]
    path = capture / capture_file_rel("fares-prod", "v1", now, "0000")
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(lines) + "\n")
    write_ground_truth(
        settings.capture_destination,
        [("e1", "203.0"), ("e2", 403), ("e4", "not-a-number"), ("unknown", 1)],
    )

    labelled = retraining_data(settings, "fares")
    assert labelled.labelled_rows == 2
    assert (labelled.target, labelled.source) == ("y", str(source))
    assert labelled.data is not None and labelled.data.endswith(".parquet")
    table = pd.read_parquet(labelled.data)
    assert list(table.columns) == ["a", "b", "y"]
    assert len(table) == 42
    assert table.tail(2).to_dict("records") == [
        {"a": 100.5, "b": 2.0, "y": 203.0},
        {"a": 200.0, "b": 3.0, "y": 403.0},
    ]
    assert "4 captured rows of fares-prod, 3 labelled (1 labels for unknown ids)" in labelled.notes
    assert "1 labels are not values of 'y' and were left out" in labelled.notes
    # the same inputs give the same table (the training pipeline's idempotency holds)
    assert retraining_data(settings, "fares").data == labelled.data
