"""The monitor on real capture files, a real MLflow store and the session's trained taxi model.

Capture is written in SageMaker's layout and format exactly as the model server writes it
(``<dest>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<uuid>.jsonl``), with the model's
own predictions, so the monitor reads what a live endpoint would have left.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlops.errors import EndpointNotFoundError, ModelNotFoundError
from mlops.settings import Settings
from tests.capture_helpers import FEATURES, predict, taxi_rows, write_capture
from tests.conftest import make_settings

pytestmark = pytest.mark.slow

ENDPOINT = "taxi-monitored"
T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # normal traffic 10:00-10:30, shifted 10:30-11:00


@pytest.fixture(scope="module")
def monitored(trained_taxi: tuple[Settings, str], tmp_path_factory: pytest.TempPathFactory):
    """Settings on the taxi store, capture with a normal and a shifted half hour."""
    store, version = trained_taxi
    root = tmp_path_factory.mktemp("monitoring")
    settings = make_settings(root, tracking_uri=store.effective_tracking_uri)
    dest = Path(settings.capture_destination)
    normal = taxi_rows(600, shift=0.0, seed=1)
    shifted = taxi_rows(600, shift=2.0, seed=2)
    variant = f"v{version}"
    normal_ids = write_capture(
        dest,
        ENDPOINT,
        variant,
        normal,
        predict(settings, "taxi", version, normal),
        T0,
        extra_lines=[
            b"{not json\n",
            json.dumps(
                {
                    "captureData": {
                        "endpointInput": {
                            "observedContentType": "text/csv",
                            "mode": "INPUT",
                            "data": "1,2\n",
                            "encoding": "CSV",
                        },
                        "endpointOutput": {
                            "observedContentType": "text/csv",
                            "mode": "OUTPUT",
                            "data": "3.0",
                            "encoding": "CSV",
                        },
                    },
                    "eventMetadata": {
                        "eventId": "short-row",
                        "inferenceTime": (T0 + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    },
                    "eventVersion": "0",
                }
            ).encode()
            + b"\n",
        ],
    )
    write_capture(
        dest,
        ENDPOINT,
        variant,
        shifted,
        predict(settings, "taxi", version, shifted),
        T0 + timedelta(minutes=30),
    )
    return settings, version, normal, normal_ids


def _runs(settings: Settings, run_id: str):
    from mlops.tracking import connect

    return connect(settings).get_run(run_id)


def test_normal_traffic_no_drift(monitored) -> None:
    from mlops.stages.monitor import monitor

    settings, version, _, _ = monitored
    result = monitor(settings, "taxi", endpoint=ENDPOINT, start=T0, end=T0 + timedelta(minutes=15))
    assert [v.version for v in result.versions] == [version]
    report = result.versions[0]
    assert report.rows == 600
    assert report.status == "ok", report.reason
    assert not result.drift_detected
    assert report.malformed_records == 1  # the line that is not JSON: counted, not a crash
    assert report.mismatched_records == 1  # two values for three features: a violation
    assert report.violations >= 1
    run = _runs(settings, report.run_id)
    assert run.data.tags["mlops.stage"] == "monitoring"
    assert run.data.tags["mlops.drift.detected"] == "false"
    assert {f"drift_score_{f}" for f in FEATURES} <= set(run.data.metrics)
    assert "drift_share" in run.data.metrics
    from mlops.tracking import connect

    artifacts = {a.path for a in connect(settings).list_artifacts(report.run_id, "evidently")}
    assert "evidently/drift_report.html" in artifacts


def test_shifted_traffic_drifts(monitored) -> None:
    from mlops.stages.monitor import monitor

    settings, version, _, _ = monitored
    start = T0 + timedelta(minutes=30)
    result = monitor(
        settings, "taxi", endpoint=ENDPOINT, start=start, end=start + timedelta(minutes=10)
    )
    report = result.versions[0]
    assert result.drift_detected and report.status == "drift", report.reason
    assert report.drift_share is not None and report.drift_share >= settings.monitoring.drift_share
    assert "trip_distance" in report.drifted_features
    payload = result.event_payload()
    assert payload["reason"] == "drift" and payload["report_run_ids"] == [report.run_id]
    assert payload["window"]["start"].startswith("2026-01-05T10:30")
    run = _runs(settings, report.run_id)
    assert run.data.tags["mlops.drift.detected"] == "true"
    assert "trip_distance" in run.data.tags["mlops.drift.features"]


def test_ground_truth_accuracy_and_drop(monitored, tmp_path: Path) -> None:
    from mlops.capture import write_ground_truth
    from mlops.stages.monitor import monitor

    settings, _, normal, ids = monitored
    labels = normal["total_amount"].to_numpy()
    window = {"endpoint": ENDPOINT, "start": T0, "end": T0 + timedelta(minutes=10)}
    # a private destination copy would lose the capture: labels go beside it, under a fresh hour
    first = list(zip(ids[:300], [f"{v:.4f}" for v in labels[:300]], strict=True))
    write_ground_truth(
        settings.capture_destination, first + [("unknown-1", "3.0"), ("unknown-2", "4.0")]
    )
    result = monitor(settings, "taxi", **window)
    report = result.versions[0]
    assert report.ground_truth_matched == 300
    assert report.accuracy["ground_truth_unknown_ids"] == 2
    assert 0 < report.accuracy["rmse"] < 10
    assert not report.accuracy_drop


def test_accuracy_drop_alarms(trained_taxi: tuple[Settings, str], tmp_path: Path) -> None:
    from mlops.capture import write_ground_truth
    from mlops.stages.monitor import monitor

    store, version = trained_taxi
    settings = make_settings(tmp_path, tracking_uri=store.effective_tracking_uri)
    frame = taxi_rows(200, shift=0.0, seed=3)
    ids = write_capture(
        Path(settings.capture_destination),
        ENDPOINT,
        f"v{version}",
        frame,
        predict(settings, "taxi", version, frame),
        T0,
    )
    wrong = frame["total_amount"].to_numpy() * 1.8  # the world changed: fares nearly doubled
    write_ground_truth(
        settings.capture_destination, list(zip(ids, [f"{v:.3f}" for v in wrong], strict=True))
    )
    result = monitor(settings, "taxi", endpoint=ENDPOINT, start=T0, end=T0 + timedelta(hours=1))
    report = result.versions[0]
    assert report.accuracy_drop and result.drift_detected
    assert "accuracy" in result.event_payload()["reason"]


def test_empty_window_is_a_no_traffic_run(monitored) -> None:
    from mlops.stages.monitor import monitor

    settings, version, _, _ = monitored
    start = T0 - timedelta(days=3)
    result = monitor(
        settings, "taxi", endpoint=ENDPOINT, start=start, end=start + timedelta(hours=1)
    )
    assert not result.drift_detected
    assert [(v.version, v.status, v.rows) for v in result.versions] == [(version, "no-traffic", 0)]
    assert (
        _runs(settings, result.versions[0].run_id).data.tags["mlops.monitor.status"] == "no-traffic"
    )


def test_the_design_capture_line_goes_through_the_monitor(trained_taxi, tmp_path: Path) -> None:
    """DESIGN.md's capture example, as is, gives duration 10.65, 1 passenger, 2.56 miles."""
    from mlops.stages.monitor import monitor

    store, version = trained_taxi
    settings = make_settings(tmp_path, tracking_uri=store.effective_tracking_uri)
    line = (
        json.dumps(  # DESIGN.md's example, field for field
            {
                "captureData": {
                    "endpointInput": {
                        "observedContentType": "text/csv",
                        "mode": "INPUT",
                        "data": "10.65,1,2.56\n",
                        "encoding": "CSV",
                    },
                    "endpointOutput": {
                        "observedContentType": "text/csv; charset=utf-8",
                        "mode": "OUTPUT",
                        "data": "12.720224380493164",
                        "encoding": "CSV",
                    },
                },
                "eventMetadata": {
                    "eventId": "44daf7d7-97c8-4504-8b3d-399891f8f217",
                    "inferenceId": "optional",
                    "inferenceTime": "2020-05-12T04:18:39Z",
                },
                "eventVersion": "0",
            }
        )
        + "\n"
    )
    folder = Path(settings.capture_destination) / ENDPOINT / f"v{version}" / "2020/05/12/04"
    folder.mkdir(parents=True)
    (folder / "18-39-000-0f1e.jsonl").write_text(line)
    result = monitor(
        settings,
        "taxi",
        endpoint=ENDPOINT,
        start="2020-05-12T04:00:00Z",
        end="2020-05-12T05:00:00Z",
    )
    report = result.versions[0]
    assert (report.records, report.rows, report.malformed_records, report.mismatched_records) == (
        1,
        1,
        0,
        0,
    )
    assert report.status == "too-few-rows" and report.violations == 0
    summary = json.loads(
        Path(
            __import__("mlflow").artifacts.download_artifacts(
                run_id=report.run_id,
                artifact_path="monitoring/summary.json",
                tracking_uri=settings.effective_tracking_uri,
            )
        ).read_text()
    )
    assert summary["rows"] == 1


def test_unknown_model_and_endpoint_name_what_exists(monitored) -> None:
    from mlops.stages.monitor import monitor

    settings, _, _, _ = monitored
    with pytest.raises(ModelNotFoundError, match="known models: .*taxi"):
        monitor(settings, "no-such-model", endpoint=ENDPOINT)
    with pytest.raises(EndpointNotFoundError, match="endpoints:"):
        monitor(settings, "taxi", endpoint="no-such-endpoint")
