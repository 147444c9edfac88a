"""Rollout policy steps and the auto-rollback alarms, on plain numbers."""

from __future__ import annotations

import random

import pytest

from mlops.errors import ConfigError
from mlops.policy import AlarmThresholds, TrafficRouting
from mlops.rollout import VariantWindow
from mlops.rollout.alarms import evaluate_alarms
from tests.conftest import make_settings


@pytest.mark.parametrize(
    ("routing", "shares"),
    [
        (TrafficRouting(type="ALL_AT_ONCE"), [100.0]),
        (TrafficRouting(type="CANARY", canary_size=10), [10.0, 100.0]),
        (TrafficRouting(type="LINEAR", linear_step=20), [20.0, 40.0, 60.0, 80.0, 100.0]),
        (TrafficRouting(type="LINEAR", linear_step=30), [30.0, 60.0, 90.0, 100.0]),
        (TrafficRouting(type="LINEAR", linear_step=50), [50.0, 100.0]),
    ],
)
def test_green_shares_end_at_full_traffic(routing: TrafficRouting, shares: list[float]) -> None:
    assert routing.green_shares() == shares


def test_canary_size_over_half_is_refused() -> None:
    with pytest.raises(ValueError, match="canary_size"):
        TrafficRouting(type="CANARY", canary_size=60)


def test_policy_that_cannot_finish_in_time_is_refused(tmp_path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(ConfigError, match="max_execution_s"):
        settings.rollout.policy(
            traffic_routing="LINEAR",
            linear_step=10,
            wait_interval_s=600,
            max_execution_s=3600,
        )


def test_policy_from_settings_with_overrides(tmp_path) -> None:
    settings = make_settings(tmp_path, rollout={"canary_size": 25, "alarms": {"min_requests": 7}})
    policy = settings.rollout.policy(wait_interval_s=2, termination_wait_s=None)
    assert policy.routing.type == "CANARY"
    assert policy.routing.canary_size == 25
    assert policy.routing.wait_interval_s == 2
    assert policy.termination_wait_s == settings.rollout.termination_wait_s
    assert policy.alarms.min_requests == 7
    with pytest.raises(ConfigError, match="unknown rollout option"):
        settings.rollout.policy(bake=3)


def _window(
    n: int,
    *,
    ok: int | None = None,
    s4: int = 0,
    s5: int = 0,
    m424: int = 0,
    p99: float = 5.0,
) -> VariantWindow:
    return VariantWindow(
        requests=n,
        status_2xx=n - s4 - s5 if ok is None else ok,
        status_4xx=s4,
        status_5xx=s5,
        model_errors=m424,
        latency_p50_ms=p99 / 2,
        latency_p99_ms=p99,
    )


THRESHOLDS = AlarmThresholds(min_requests=20)


def test_healthy_green_fires_nothing() -> None:
    rng = random.Random(1)
    blue = [rng.gauss(10, 3) for _ in range(40)]
    pairs = [(b * rng.uniform(0.97, 1.03), b) for b in blue]  # the same requests, nearly
    report = evaluate_alarms(_window(40), _window(200), THRESHOLDS, pairs=pairs)
    assert report.fired is None
    assert report.signal_pairs == 40
    assert report.signal_differing_share == 0.0


def test_server_errors_and_model_errors_fire_5xx_alarm() -> None:
    blue = _window(100)
    assert evaluate_alarms(_window(30, s5=30), blue, THRESHOLDS).fired == "5xx_rate"
    # 424 (model error) counts against green, not as the caller's 4xx
    report = evaluate_alarms(_window(30, s4=30, m424=30), blue, THRESHOLDS)
    assert report.fired == "5xx_rate"
    assert report.client_error_rate == 0.0


def test_client_errors_fire_4xx_alarm_with_blue_rate_in_reason() -> None:
    report = evaluate_alarms(_window(30, s4=10), _window(100), THRESHOLDS)
    assert report.fired == "4xx_rate"
    assert "blue: 0.0%" in (report.reason or "")


def test_too_few_requests_wait_unless_final() -> None:
    green = _window(3, s5=3)
    assert evaluate_alarms(green, _window(100), THRESHOLDS).fired is None
    assert evaluate_alarms(green, _window(100), THRESHOLDS, final=True).fired == "5xx_rate"


def test_slow_green_fires_latency_alarm() -> None:
    report = evaluate_alarms(_window(30, p99=900.0), _window(100), THRESHOLDS)
    assert report.fired == "latency_p99"
    assert "900.0 ms" in (report.reason or "")


def test_shifted_predictions_fire_model_signal_gate() -> None:
    rng = random.Random(2)
    pairs = [(b * 1.8, b) for b in (rng.gauss(10, 3) for _ in range(40))]
    report = evaluate_alarms(_window(40), _window(200), THRESHOLDS, pairs=pairs)
    assert report.fired == "model_signal"
    assert report.signal_p_value is not None and report.signal_p_value < 0.01
    assert "of 40 paired predictions" in (report.reason or "")
    assert "differ by more than 10%" in (report.reason or "")


def test_from_metrics_reads_counts_and_latency() -> None:
    window = VariantWindow.from_metrics(
        {
            "requests": 3,
            "status_2xx": 3,
            "latency_ms": {"p50": 1.0, "p99": 2.0},
            "predictions": [1.0, "nan", None, 2.5],  # the gate pairs predictions instead
        }
    )
    assert (window.requests, window.status_2xx) == (3, 3)
    assert window.latency_p99_ms == 2.0
    assert VariantWindow.from_metrics(None).requests == 0
