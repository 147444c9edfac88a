"""Per-minute endpoint metrics on disk, read back by ``read_health``, across gateway restarts.

A real endpoint (gateway and model server on loopback) with one-second periods, so records
close quickly: requests are counted exactly, 4xx answers of bad input too; a gateway killed
with SIGKILL keeps what it had flushed and a restarted one adds to it; SIGTERM flushes the
open period.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from mlops.backends.local.gateway import (
    EndpointClient,
    VariantSpec,
    create_endpoint,
    delete_endpoint,
    describe_endpoint,
    start_endpoint,
)
from mlops.backends.local.gateway.processes import pid_alive
from mlops.backends.local.gateway.state import endpoint_metrics_dir
from mlops.errors import EndpointNotFoundError
from mlops.monitoring.endpoint_metrics import MetricsRecord
from mlops.monitoring.health import VariantHealth, read_health
from mlops.settings import Settings
from tests.conftest import make_settings

pytestmark = pytest.mark.slow

NAME = "taxi-health"
T = TypeVar("T")


def _wait_for(check: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("health")


def _settings(root: Path, store: Settings, period_s: int) -> Settings:
    return make_settings(
        root,
        tracking_uri=store.effective_tracking_uri,
        serving={"metrics_period_s": period_s, "metrics_flush_s": 0.2},
    )


@pytest.fixture(scope="module")
def fast(root: Path, trained_taxi: tuple[Settings, str]) -> Settings:
    """Settings whose gateways close a metrics period every second."""
    return _settings(root, trained_taxi[0], 1)


@pytest.fixture(scope="module")
def hourly(root: Path, trained_taxi: tuple[Settings, str]) -> Settings:
    """The same work dir, but periods of an hour: nothing closes while the test runs."""
    return _settings(root, trained_taxi[0], 3600)


@pytest.fixture(scope="module")
def endpoint(fast: Settings, taxi_ref: str) -> Iterator[str]:
    create_endpoint(fast, NAME, [VariantSpec("v1", taxi_ref)], capture=False)
    yield NAME
    try:
        last = describe_endpoint(fast, NAME)
    except EndpointNotFoundError:
        return
    delete_endpoint(fast, NAME)
    for pid in [last.gateway_pid, *(v.pid for v in last.variants)]:
        if pid:
            _wait_for(lambda pid=pid: not pid_alive(pid), 15, f"pid {pid} to exit")


def _send(settings: Settings, rows: list[bytes], good: int, bad: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    with EndpointClient.for_endpoint(settings, NAME) as client:
        for i in range(good + bad):
            body = rows[i % len(rows)] if i < good else b"not,a,number\n"
            answer = client.invoke(body, "text/csv")
            assert answer.variant == "v1"
            statuses[answer.status] += 1
    assert statuses == Counter({200: good, 400: bad}), statuses
    return statuses


def _health(settings: Settings, start: datetime, end: datetime) -> VariantHealth:
    found = read_health(endpoint_metrics_dir(settings, NAME), start=start, end=end, variant="v1")
    return found["v1"]


def _kill(pid: int | None, sig: signal.Signals) -> None:
    assert pid is not None
    os.kill(pid, sig)
    _wait_for(lambda: not pid_alive(pid), 60, f"the gateway (pid {pid}) to exit on {sig.name}")


def test_requests_counted_exactly_across_restarts(
    fast: Settings, hourly: Settings, endpoint: str, csv_rows: list[bytes]
) -> None:
    early = datetime.now(UTC) - timedelta(hours=2)

    def late() -> datetime:
        return datetime.now(UTC) + timedelta(hours=2)

    def total_is(requests: int) -> VariantHealth | None:
        health = _health(fast, early, late())
        return health if health.requests == requests else None

    # 1. traffic with bad input: closed periods are flushed by the running gateway
    _send(fast, csv_rows, good=20, bad=3)
    first = _wait_for(lambda: total_is(23), what="23 requests in the metric files")
    assert (first.errors_4xx, first.errors_5xx) == (3, 0)
    assert first.rate_4xx == pytest.approx(3 / 23) and first.rate_5xx == 0.0
    assert first.minutes >= 1
    assert first.latency_p50 is not None and first.latency_p99 is not None
    assert first.latency_max is not None
    assert 0 < first.latency_p50 <= first.latency_p99 <= first.latency_max * 1.01
    assert first.overhead_p99 is not None and first.overhead_p99 >= 0

    # 2. SIGKILL: what was flushed stays; a gateway started again adds to it
    _kill(describe_endpoint(fast, NAME).gateway_pid, signal.SIGKILL)
    boundary = datetime.fromtimestamp(math.ceil(time.time()) + 1, UTC)
    assert start_endpoint(fast, NAME).status == "InService"
    _wait_for(lambda: datetime.now(UTC) >= boundary, 5, "the next period")
    _send(fast, csv_rows, good=10, bad=1)
    both = _wait_for(lambda: total_is(34), what="34 requests after the restart")
    assert (both.errors_4xx, both.errors_5xx) == (4, 0)
    before = _health(fast, early, boundary)
    after = _health(fast, boundary, late())
    assert (before.requests, before.errors_4xx) == (23, 3)
    assert (after.requests, after.errors_4xx) == (11, 1)
    assert before.minutes + after.minutes == both.minutes

    # 3. SIGTERM: the gateway writes its open period (an hour long here) as it stops
    _kill(describe_endpoint(fast, NAME).gateway_pid, signal.SIGTERM)
    assert start_endpoint(hourly, NAME).status == "InService"
    hour = int(time.time()) // 3600
    _send(hourly, csv_rows, good=5, bad=2)
    time.sleep(1.0)  # five flush intervals: an open period must not be written
    if int(time.time()) // 3600 == hour:  # the hour did not close meanwhile
        assert _health(fast, early, late()).requests == 34
    _kill(describe_endpoint(hourly, NAME).gateway_pid, signal.SIGTERM)
    final = _health(fast, early, late())
    assert (final.requests, final.errors_4xx, final.errors_5xx) == (41, 6, 0)

    # the files: <metrics>/yyyy/mm/dd/hh.jsonl, whole JSON lines only
    folder = endpoint_metrics_dir(fast, NAME)
    assert folder == fast.endpoints_dir / NAME / "metrics"
    files = sorted(folder.rglob("*.jsonl"))
    assert files
    for path in files:
        parts = path.relative_to(folder).parts
        assert [len(p) for p in parts] == [4, 2, 2, 8]  # yyyy/mm/dd/hh.jsonl
        data = path.read_bytes()
        assert data.endswith(b"\n")
        records = [MetricsRecord.from_line(line) for line in data.splitlines()]
        assert {r.variant for r in records} == {"v1"}
    assert read_health(folder, start=early, end=late(), variant="nope")["nope"].requests == 0
