"""The gateway's per-minute metrics: O(1) aggregation, flushing closed minutes, the open one."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from mlops.backends.local.gateway.metrics import VariantMetrics
from mlops.backends.local.gateway.minute_metrics import MinuteMetrics
from mlops.monitoring.endpoint_metrics import read_records, status_class
from mlops.rollout.alarms import VariantWindow

T0 = 1_796_036_280  # 2026-11-30T10:58:00Z


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _all(folder: Path) -> list[tuple[int, str, int, int, int]]:
    records, skipped = read_records(folder, start=0, end=T0 + 86_400)
    assert skipped == 0
    return [(r.start, r.variant, r.invocations, r.errors_4xx, r.errors_5xx) for r in records]


def test_closed_minutes_are_flushed_and_the_open_one_at_the_end(tmp_path: Path) -> None:
    clock = Clock(T0 + 5)
    minutes = MinuteMetrics(tmp_path, clock=clock)
    for status in (200, 200, 400, 424, 500):
        minutes.record("blue", status, 12.0, 0.3)
    minutes.record("green", 200, 30.0)
    clock.now = T0 + 59.9
    assert minutes.flush() == 0 and _all(tmp_path) == []  # minute still open
    minutes.record("blue", 200, 11.0)
    clock.now = T0 + 61
    minutes.record("blue", 503, 1.0)  # the next minute
    assert minutes.flush() == 2
    assert _all(tmp_path) == [(T0, "blue", 6, 1, 2), (T0, "green", 1, 0, 0)]
    assert minutes.flush() == 0
    assert minutes.flush(everything=True) == 1  # shutdown: the open minute too
    assert _all(tmp_path)[-1] == (T0 + 60, "blue", 1, 0, 1)
    records, _ = read_records(tmp_path, start=T0, end=T0 + 60, variant="blue")
    (blue,) = records
    assert blue.model_latency.count == 6 and blue.overhead_latency.count == 5
    assert (blue.model_latency.min, blue.model_latency.max) == (11.0, 12.0)


def test_short_periods_for_tests(tmp_path: Path) -> None:
    clock = Clock(T0 + 0.5)
    minutes = MinuteMetrics(tmp_path, period_s=1, clock=clock)
    minutes.record("v1", 200, 1.0)
    clock.now = T0 + 1.2
    minutes.record("v1", 200, 1.0)
    clock.now = T0 + 2.0
    assert minutes.flush() == 2
    records, _ = read_records(tmp_path, start=T0, end=T0 + 2)
    assert [(r.start, r.period_s) for r in records] == [(T0, 1), (T0 + 1, 1)]
    with pytest.raises(ValueError, match="at least 1 second"):
        MinuteMetrics(tmp_path, period_s=0)


def test_a_failed_write_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "metrics"
    blocker.write_text("a file where the folder should be")
    minutes = MinuteMetrics(blocker)
    minutes.record("v1", 200, 1.0)
    with caplog.at_level(logging.ERROR):
        assert minutes.flush(everything=True) == 0
    assert "could not write 1 endpoint metrics record" in caplog.text


def test_flush_every_runs_until_cancelled(tmp_path: Path) -> None:
    clock = Clock(T0 + 1)
    minutes = MinuteMetrics(tmp_path, clock=clock)
    minutes.record("v1", 200, 1.0)
    clock.now = T0 + 60

    async def run() -> None:
        task = asyncio.create_task(minutes.flush_every(0.01))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if _all(tmp_path):
                break
        task.cancel()

    asyncio.run(run())
    assert _all(tmp_path) == [(T0, "v1", 1, 0, 0)]


@pytest.mark.parametrize("status", [200, 400, 404, 413, 415, 424, 500, 503, 504])
def test_health_and_rollout_alarms_classify_alike(status: int) -> None:
    """One classification: the rollout's alarm rates agree with :func:`status_class`."""
    metrics = VariantMetrics()
    metrics.record(status, 1.0, [])
    window = VariantWindow.from_metrics(metrics.summary(0))
    kind = status_class(status)
    assert window.server_error_rate == (1.0 if kind == "5xx" else 0.0)
    assert window.client_error_rate == (1.0 if kind == "4xx" else 0.0)
