"""The endpoint metrics format: latency histograms, records, the writer and the reader."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from mlops.errors import ConfigError
from mlops.monitoring.endpoint_metrics import (
    RELATIVE_ACCURACY,
    LatencyHistogram,
    MetricsRecord,
    append_records,
    metrics_file,
    read_records,
    status_class,
)
from mlops.monitoring.health import VariantHealth, read_health

T0 = int(datetime(2026, 11, 30, 10, 58, tzinfo=UTC).timestamp())  # minute-aligned


def _histogram(values: np.ndarray) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for value in values:
        histogram.add(float(value))
    return histogram


def _within_bound(estimate: float | None, exact: float) -> bool:
    assert estimate is not None
    return abs(estimate - exact) <= RELATIVE_ACCURACY * exact * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize(
    ("status", "kind"),
    [(200, "2xx"), (204, "2xx"), (400, "4xx"), (413, "4xx"), (415, "4xx"), (424, "5xx"),
     (500, "5xx"), (503, "5xx"), (504, "5xx"), (302, None), (100, None)],
)  # fmt: skip
def test_status_class(status: int, kind: str | None) -> None:
    assert status_class(status) == kind


_RNG = np.random.default_rng(7)


@pytest.mark.parametrize(
    "values",
    [
        _RNG.lognormal(mean=1.5, sigma=0.8, size=5000),  # a typical latency tail
        _RNG.uniform(0.5, 2000.0, size=3000),
        np.concatenate([_RNG.normal(4.0, 0.3, 990).clip(0.1), _RNG.normal(900, 50, 10)]),
        np.full(50, 7.25),
        np.array([3.3]),
        np.array([1.0, 1000.0]),
        np.array([0.0, 0.0004, 0.2, 5.0, 60_000.0]),
    ],
    ids=["lognormal", "uniform", "bimodal", "constant", "one", "two", "extremes"],
)
def test_quantiles_match_numpy_within_the_bound(values: np.ndarray) -> None:
    histogram = _histogram(values)
    assert histogram.count == len(values)
    assert histogram.min == values.min() and histogram.max == values.max()  # exact
    assert histogram.mean == pytest.approx(values.mean())
    for q in (0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        exact = float(np.percentile(values, 100 * q))
        estimate = histogram.quantile(q)
        if exact >= 0.01:
            assert _within_bound(estimate, exact), (q, estimate, exact)
        else:  # below MIN_LATENCY_MS: one shared bucket, absolute error under 1 µs
            assert estimate is not None and abs(estimate - exact) <= 1e-3


def test_empty_histogram_and_bad_values() -> None:
    histogram = LatencyHistogram()
    for bad in (math.nan, math.inf, -1.0):
        histogram.add(bad)
    assert histogram.count == 0 and histogram.quantile(0.5) is None and histogram.mean is None
    assert LatencyHistogram.from_dict(histogram.to_dict()) == LatencyHistogram()


def test_minutes_merge_to_the_whole() -> None:
    values = _RNG.lognormal(2.0, 1.0, size=2000)
    whole = _histogram(values)
    merged = LatencyHistogram()
    for part in np.array_split(values, 7):
        merged.merge(LatencyHistogram.from_dict(json.loads(json.dumps(_histogram(part).to_dict()))))
    assert merged.buckets == whole.buckets
    assert (merged.count, merged.min, merged.max) == (whole.count, whole.min, whole.max)
    assert merged.sum == pytest.approx(whole.sum)
    assert [merged.quantile(q) for q in (0.5, 0.99)] == [whole.quantile(q) for q in (0.5, 0.99)]


def _record(start: int, variant: str = "v1", statuses: tuple[int, ...] = (200,)) -> MetricsRecord:
    record = MetricsRecord(start, 60, variant)
    for i, status in enumerate(statuses):
        record.add(status, 10.0 + i, 0.5)
    return record


def test_record_line_round_trip() -> None:
    record = _record(T0, statuses=(200, 200, 400, 424, 503))
    line = record.to_line()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    doc = json.loads(line)
    assert doc["time"] == "2026-11-30T10:58:00Z" and doc["period_s"] == 60
    assert (doc["Invocations"], doc["Invocation4XXErrors"], doc["Invocation5XXErrors"]) == (5, 1, 2)
    assert doc["ModelLatency"]["count"] == 5 and doc["OverheadLatency"]["count"] == 5
    assert MetricsRecord.from_line(line) == record
    for broken in (b'{"v": 1}', b"[1, 2]", b'{"v": 99, "start": 1}', b"{not json", b"\xff"):
        with pytest.raises(ValueError):
            MetricsRecord.from_line(broken)


def test_files_by_utc_hour(tmp_path: Path) -> None:
    assert metrics_file(tmp_path, T0) == tmp_path / "2026" / "11" / "30" / "10.jsonl"
    written = append_records(tmp_path, [_record(T0), _record(T0 + 60), _record(T0 + 120)])
    assert written == 3
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jsonl")) == [
        "2026/11/30/10.jsonl",
        "2026/11/30/11.jsonl",
    ]
    assert len((tmp_path / "2026/11/30/10.jsonl").read_bytes().splitlines()) == 2


def test_window_bounds_and_variant(tmp_path: Path) -> None:
    append_records(tmp_path, [_record(T0 + 60 * i, v) for i in range(-70, 70) for v in ("a", "b")])
    found, skipped = read_records(tmp_path, start=T0, end=T0 + 120)
    assert skipped == 0
    assert [(r.start, r.variant) for r in found] == [
        (T0, "a"), (T0, "b"), (T0 + 60, "a"), (T0 + 60, "b")
    ]  # fmt: skip
    only_b, _ = read_records(tmp_path, start=T0 - 3600, end=T0 + 3600, variant="b")
    assert len(only_b) == 120 and {r.variant for r in only_b} == {"b"}
    assert read_records(tmp_path, start=T0, end=T0) == ([], 0)
    assert read_records(tmp_path / "missing", start=T0, end=T0 + 60) == ([], 0)
    # a window in the middle of a minute misses that minute: it is stamped with its start
    assert read_records(tmp_path, start=T0 + 1, end=T0 + 60) == ([], 0)


def test_incomplete_last_line_and_garbage_are_skipped(tmp_path: Path) -> None:
    append_records(tmp_path, [_record(T0), _record(T0 + 60)])
    path = metrics_file(tmp_path, T0)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"v":1,"start":' + str(T0 + 120).encode())  # killed mid-line
    found, skipped = read_records(tmp_path, start=T0, end=T0 + 3600)
    assert [r.start for r in found] == [T0, T0 + 60] and skipped == 1
    # the next writer starts on a fresh line, so its records stay readable
    append_records(tmp_path, [_record(T0 + 60, "b")])
    with path.open("ab") as fh:
        fh.write(b"not json\n")
    found, skipped = read_records(tmp_path, start=T0, end=T0 + 3600)
    assert [(r.start, r.variant) for r in found] == [(T0, "v1"), (T0 + 60, "v1"), (T0 + 60, "b")]
    assert skipped == 2


def test_read_health(tmp_path: Path) -> None:
    start = datetime.fromtimestamp(T0, UTC)
    assert read_health(tmp_path, start=start, end=start + timedelta(hours=1)) == {}
    empty = read_health(tmp_path, start=start, end=start + timedelta(hours=1), variant="v1")
    assert empty == {"v1": VariantHealth("v1")}
    assert empty["v1"].requests == 0 and empty["v1"].latency_p99 is None

    latencies = {T0: [5.0, 6.0, 7.0], T0 + 60: [8.0, 100.0], T0 + 120: [9.0]}
    records = []
    for minute, values in latencies.items():
        record = MetricsRecord(minute, 60, "v1")
        for i, ms in enumerate(values):
            record.add(400 if i == 0 else 200, ms, 0.1)
        records.append(record)
    second = MetricsRecord(T0 + 60, 60, "v1")  # another line of the same minute adds up
    second.add(424, 20.0)
    append_records(tmp_path, [*records, second, _record(T0, "v2", (503,))])

    health = read_health(tmp_path, start=start, end=start + timedelta(minutes=2))
    assert set(health) == {"v1", "v2"}
    v1 = health["v1"]
    assert (v1.requests, v1.errors_4xx, v1.errors_5xx, v1.minutes) == (6, 2, 1, 2)
    assert (v1.rate_4xx, v1.rate_5xx) == (pytest.approx(2 / 6), pytest.approx(1 / 6))
    values = [5.0, 6.0, 7.0, 8.0, 100.0, 20.0]
    for q, got in ((50, v1.latency_p50), (95, v1.latency_p95), (99, v1.latency_p99)):
        assert _within_bound(got, float(np.percentile(values, q)))
    assert v1.latency_max == 100.0 and v1.latency_mean == pytest.approx(np.mean(values))
    assert v1.overhead_p99 == pytest.approx(0.1, rel=RELATIVE_ACCURACY)
    assert health["v2"].errors_5xx == 1 and health["v2"].rate_5xx == 1.0
    doc = json.loads(json.dumps({k: h.to_dict() for k, h in health.items()}))
    assert doc["v1"]["requests"] == 6 and doc["v1"]["variant"] == "v1"

    naive = datetime(2026, 11, 30, 10, 58)  # naive times are UTC
    assert read_health(tmp_path, start=naive, end=naive + timedelta(hours=1))["v1"].requests == 7
    with pytest.raises(ConfigError, match="start must come before the end"):
        read_health(tmp_path, start=start, end=start)
