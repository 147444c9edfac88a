"""The endpoint state file and the gateway's metrics, without processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mlops.backends.local.gateway.metrics import MAX_EVENTS, MAX_PREDICTIONS, VariantMetrics
from mlops.backends.local.gateway.state import (
    EndpointState,
    VariantState,
    load_state,
    save_state,
    state_path,
    validate_name,
)
from mlops.errors import EndpointError, EndpointNotFoundError, EndpointStateError


@pytest.mark.parametrize("name", ["a", "taxi-prod", "A1", "a--b", "x" * 63])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "a-", "a_b", "a.b", "a b", "x" * 64, "ü"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(EndpointError, match="not valid.*letters, digits and hyphens"):
        validate_name(name, "variant")


def test_state_round_trip_is_atomic(tmp_path: Path) -> None:
    state = EndpointState(
        name="ep",
        port=1234,
        variants=[VariantState(name="v1", model_dir="/m", model_ref="models:/taxi/1", weight=2)],
    )
    path = save_state(tmp_path, state)
    assert path == state_path(tmp_path, "ep") == tmp_path / "ep" / "endpoint.json"
    # no temp file left; the backup of the last good state beside it
    assert sorted(p.name for p in path.parent.iterdir()) == ["endpoint.json", "endpoint.json.bak"]
    loaded = load_state(tmp_path, "ep")
    assert loaded == state
    assert loaded.variant("v1").weight == 2.0
    with pytest.raises(EndpointError, match="no variant 'v9' \\(variants: v1\\)"):
        loaded.variant("v9")


def test_load_errors(tmp_path: Path) -> None:
    save_state(tmp_path, EndpointState(name="other", port=1))
    with pytest.raises(EndpointNotFoundError, match="'ep' does not exist \\(endpoints: other\\)"):
        load_state(tmp_path, "ep")
    state_path(tmp_path, "other").write_text("{not json")
    assert load_state(tmp_path, "other").port == 1  # from endpoint.json.bak
    (tmp_path / "other" / "endpoint.json.bak").write_text("{not json either")
    with pytest.raises(
        EndpointStateError, match="is damaged \\(not JSON.*mlops endpoint delete other --force"
    ):
        load_state(tmp_path, "other")


def test_metrics_window_and_counts() -> None:
    metrics = VariantMetrics()
    for status, latency in [(200, 1.0), (200, 3.0), (400, 2.0), (424, 9.0), (503, 4.0)]:
        metrics.record(status, latency, [latency] if status == 200 else [])
    summary = metrics.summary(0)
    assert {k: summary[k] for k in ("requests", "status_2xx", "status_4xx", "status_5xx")} == {
        "requests": 5,
        "status_2xx": 2,
        "status_4xx": 2,  # 400 and 424
        "status_5xx": 1,
    }
    assert summary["model_errors"] == 1
    assert summary["latency_ms"] == {"p50": 3.0, "p90": 7.0, "p99": pytest.approx(8.8), "max": 9.0}
    assert summary["predictions"] == [1.0, 3.0]
    future = metrics.summary(time.time() + 60)
    assert future["requests"] == 0 and future["predictions"] == []
    assert future["latency_ms"] == {"p50": None, "p90": None, "p99": None, "max": None}


def test_request_events_are_bounded_at_max_events_keeping_the_newest() -> None:
    metrics = VariantMetrics()
    over = 25
    for i in range(MAX_EVENTS + over):
        metrics.record(200 if i >= over else 503, float(i), [])
    summary = metrics.summary(0)
    assert len(metrics.events) == summary["requests"] == MAX_EVENTS
    assert summary["status_5xx"] == 0  # the oldest (the 503s) were the ones dropped
    assert summary["latency_ms"]["max"] == MAX_EVENTS + over - 1
    assert min(latency for _, _, latency in metrics.events) == over


def test_predictions_are_bounded_at_max_predictions_keeping_the_newest() -> None:
    metrics = VariantMetrics()
    batch = 1000  # predictions per request: the bound counts predictions, not requests
    requests = MAX_PREDICTIONS // batch + 3
    for i in range(requests):
        metrics.record(200, 1.0, [float(i)] * batch)
    predictions = metrics.summary(0)["predictions"]
    assert len(predictions) == MAX_PREDICTIONS
    assert predictions[0] == 3.0 and predictions[-1] == requests - 1  # oldest first
    assert metrics.summary(0)["requests"] == requests  # requests are bounded on their own
