"""Several model-server instances per variant and the gateway's scaling loop: real gateway
and model-server processes on loopback, load from a thread pool, judged from the caller's
side (every request answered 200, every answered request captured once)."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from mlops.backends import VariantSpec
from mlops.backends.local.endpoint import LocalEndpointBackend
from mlops.backends.local.gateway import (
    EndpointClient,
    create_endpoint,
    delete_endpoint,
    describe_endpoint,
    start_endpoint,
    stop_endpoint,
)
from mlops.backends.local.gateway.processes import is_process_of, pid_alive
from mlops.errors import EndpointError
from mlops.settings import Settings
from tests.conftest import make_settings

pytestmark = pytest.mark.slow

T = TypeVar("T")


def _wait_for(check: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


class Load:
    """Callers sending requests from a thread pool; every answer's status is kept.

    ``pause_s`` between a caller's requests: 0 for load, more for a trickle.
    """

    def __init__(self, client: EndpointClient, row: bytes, callers: int, pause_s: float) -> None:
        self.client, self.row, self.pause_s = client, row, pause_s
        self.results: list[tuple[str, int | str]] = []  # (inference id, status or error)
        self._ids = itertools.count()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(callers)
        self._futures = [self._pool.submit(self._call) for _ in range(callers)]

    def _call(self) -> None:
        while not self._stop.is_set():
            inference_id = f"req-{next(self._ids)}"
            try:
                status: int | str = self.client.invoke(
                    self.row, inference_id=inference_id, timeout=60
                ).status
            except EndpointError as exc:
                status = str(exc)
            self.results.append((inference_id, status))
            self._stop.wait(self.pause_s)

    def stop(self) -> list[tuple[str, int | str]]:
        self._stop.set()
        for future in self._futures:
            future.result()
        self._pool.shutdown()
        return self.results


def _failed(results: list[tuple[str, int | str]]) -> list[tuple[str, int | str]]:
    return [r for r in results if r[1] != 200]


@pytest.fixture(scope="module")
def scale_settings(
    trained_taxi: tuple[Settings, str], tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """One worker per model server; a scaling loop that reacts within seconds."""
    store, _ = trained_taxi
    return make_settings(
        tmp_path_factory.mktemp("autoscaling"),
        tracking_uri=store.effective_tracking_uri,
        serving={"workers": 1},
        autoscaling={
            "enabled": True,
            "min_instances": 1,
            "max_instances": 3,
            "target_invocations_per_instance": 120,  # 2 requests a second per instance
            "scale_out_cooldown_s": 0,
            "scale_in_cooldown_s": 2,
            "evaluation_period_s": 2,
        },
    )


@pytest.fixture
def cleanup(scale_settings: Settings) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        try:
            last = describe_endpoint(scale_settings, name)
        except EndpointError:
            continue
        delete_endpoint(scale_settings, name)
        pids = [last.gateway_pid, *(i.pid for v in last.variants for i in v.instances)]
        for pid in (p for p in pids if p):
            _wait_for(lambda pid=pid: not pid_alive(pid), 30, f"pid {pid} to exit")


def test_bad_instance_counts_are_refused(scale_settings: Settings, taxi_ref: str) -> None:
    for count in (0, 101):
        spec = VariantSpec("v1", taxi_ref, instance_count=count)
        with pytest.raises(EndpointError, match=rf"asks for {count} instances.*1 to 100"):
            create_endpoint(scale_settings, "bad-count", [spec])
    assert not (scale_settings.endpoints_dir / "bad-count").exists()


def test_three_instances_serve_survive_a_crash_and_a_gateway_restart(
    scale_settings: Settings, taxi_ref: str, csv_rows: list[bytes], cleanup: list[str]
) -> None:
    name = "three"
    cleanup.append(name)
    fixed = scale_settings.model_copy(
        update={"autoscaling": scale_settings.autoscaling.model_copy(update={"enabled": False})}
    )
    create_endpoint(fixed, name, [VariantSpec("v1", taxi_ref, instance_count=3)], capture=False)
    with LocalEndpointBackend(fixed) as backend:
        described = backend.describe_endpoint(name).variant("v1")
        assert described is not None and described.instance_count == 3
    state = describe_endpoint(fixed, name)
    assert state.autoscaling is None
    pids = [i.pid for i in state.variants[0].instances]
    assert len(set(pids)) == 3
    assert all(is_process_of(p, "mlops.serving", str(i.port))
               for p, i in zip(pids, state.variants[0].instances, strict=True))  # fmt: skip

    with EndpointClient.for_endpoint(fixed, name) as client:
        load = Load(client, csv_rows[0], callers=3, pause_s=0.0)
        try:
            _wait_for(lambda: len(load.results) >= 20, 60, "requests before the crash")
            os.kill(pids[1], signal.SIGKILL)

            def replaced() -> bool:
                v1 = client.state().variants[0]
                now = [i.pid for i in v1.instances]
                return v1.serving_instances == 3 and pids[1] not in now and len(set(now)) == 3

            _wait_for(replaced, 90, "the killed instance to be replaced")
            served = len(load.results)
            _wait_for(lambda: len(load.results) >= served + 20, 60, "requests after the restart")
        finally:
            results = load.stop()
        assert _failed(results) == []

        before = client.state()
        os.kill(before.gateway_pid, signal.SIGKILL)  # type: ignore[arg-type]
        _wait_for(lambda: not pid_alive(before.gateway_pid), 15, "the gateway to die")
        after = start_endpoint(fixed, name)
        assert after.variants[0].instance_count == 3
        assert [i.pid for i in after.variants[0].instances] == [
            i.pid for i in before.variants[0].instances
        ]  # the three servers kept running and were adopted
        assert client.invoke(csv_rows[0]).status == 200


def test_autoscaling_adds_and_removes_instances_without_a_failed_request(
    scale_settings: Settings,
    taxi_ref: str,
    csv_rows: list[bytes],
    cleanup: list[str],
    tmp_path: Path,
) -> None:
    from mlops.capture import read_capture

    name = "scaling"
    cleanup.append(name)
    destination = str(tmp_path / "capture")
    create_endpoint(scale_settings, name, [VariantSpec("v1", taxi_ref)],
                    capture=True, capture_destination=destination, sampling=100)  # fmt: skip
    backend = LocalEndpointBackend(scale_settings)

    def serving() -> int:
        variant = backend.describe_endpoint(name).variant("v1")
        assert variant is not None
        return variant.instance_count

    with backend, EndpointClient.for_endpoint(scale_settings, name) as client:
        assert serving() == 1
        heavy = Load(client, csv_rows[0], callers=4, pause_s=0.0)
        try:
            _wait_for(lambda: serving() == 3, 180, "scale-out to 3 instances under load")
        finally:
            results = heavy.stop()
        scaled_out = client.state().variants[0].instances
        # a trickle (under two requests a second: below one instance's target) goes on
        # while the instances are drained and stopped
        light = Load(client, csv_rows[0], callers=1, pause_s=0.6)
        try:
            _wait_for(lambda: len(client.state().variants[0].instances) == 1, 180,
                      "scale-in to 1 instance")  # fmt: skip
        finally:
            results += light.stop()
        assert serving() == 1
        state = client.state()

    assert _failed(results) == [], f"{len(_failed(results))} of {len(results)} requests failed"
    assert len(light.results) > 0
    gone = [i.pid for i in scaled_out if i.pid not in {j.pid for j in state.variants[0].instances}]
    assert len(gone) == 2 and not any(pid_alive(p) for p in gone)
    assert state.autoscaling is not None
    moves = [(a.variant, a.from_count, a.to_count, a.status) for a in state.autoscaling.activities]
    assert ("v1", 1, 3, "Successful") in moves or (
        ("v1", 1, 2, "Successful") in moves and ("v1", 2, 3, "Successful") in moves
    ), moves
    assert moves[-1][2:] == (1, "Successful"), moves
    assert "invocations per instance per minute" in state.autoscaling.activities[-1].cause

    # every answered request was captured once, whichever instance answered it
    stop_endpoint(scale_settings, name)
    captured = [
        r["eventMetadata"].get("inferenceId") for r in read_capture(destination, name, "v1")
    ]
    assert sorted(captured) == sorted(i for i, _ in results)
