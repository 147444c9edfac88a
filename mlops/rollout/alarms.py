"""Auto-rollback alarms: error rates, latency and a model-signal gate on green's traffic."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel

from mlops.rollout.policy import AlarmThresholds

__all__ = ["AlarmReport", "VariantWindow", "evaluate_alarms", "signal_shift"]

# The signal gate fires only when the shift is also unlikely to be sampling noise.
_SIGNAL_P_VALUE = 0.01


class VariantWindow(BaseModel):
    """What the gateway saw of one variant over a time window."""

    requests: int = 0
    status_2xx: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    model_errors: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    predictions: list[float] = []

    @classmethod
    def from_metrics(cls, data: dict[str, Any] | None) -> VariantWindow:
        """Build from one variant's entry of the gateway's ``/admin/metrics``."""
        data = data or {}
        latency = data.get("latency_ms") or {}
        return cls(
            requests=int(data.get("requests", 0)),
            status_2xx=int(data.get("status_2xx", 0)),
            status_4xx=int(data.get("status_4xx", 0)),
            status_5xx=int(data.get("status_5xx", 0)),
            model_errors=int(data.get("model_errors", 0)),
            latency_p50_ms=latency.get("p50"),
            latency_p99_ms=latency.get("p99"),
            predictions=[float(p) for p in data.get("predictions", []) if _finite(p)],
        )

    @property
    def server_error_rate(self) -> float:
        """5xx plus model errors (424): failures that are not the caller's fault."""
        failed = self.status_5xx + self.model_errors
        return failed / self.requests if self.requests else 0.0

    @property
    def client_error_rate(self) -> float:
        """4xx other than model errors."""
        bad = self.status_4xx - self.model_errors
        return max(bad, 0) / self.requests if self.requests else 0.0


class AlarmReport(BaseModel):
    """The alarm values seen at one moment, and the alarm that fired, if any."""

    green_requests: int
    blue_requests: int
    server_error_rate: float
    client_error_rate: float
    latency_p99_ms: float | None
    signal_shift: float | None
    signal_p_value: float | None
    fired: str | None = None
    reason: str | None = None

    def metrics(self) -> dict[str, float]:
        """The numeric values, for logging to MLflow."""
        values = {
            "green_requests": float(self.green_requests),
            "blue_requests": float(self.blue_requests),
            "green_5xx_rate": self.server_error_rate,
            "green_4xx_rate": self.client_error_rate,
            "green_latency_p99_ms": self.latency_p99_ms,
            "signal_shift": self.signal_shift,
        }
        return {k: float(v) for k, v in values.items() if v is not None and _finite(v)}


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def signal_shift(green: list[float], blue: list[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value of green vs blue predictions."""
    from scipy.stats import ks_2samp

    result = ks_2samp(green, blue)
    return float(result.statistic), float(result.pvalue)


def evaluate_alarms(
    green: VariantWindow,
    blue: VariantWindow,
    thresholds: AlarmThresholds,
    *,
    final: bool = False,
) -> AlarmReport:
    """Check green against the alarms.

    Rates and latency are judged once green has served ``min_requests``; before that a
    single early error does not roll back. The model-signal gate compares green's and
    blue's predictions when both have ``min_requests`` of them. With ``final`` (the end
    of a bake) the error alarms are judged on whatever green served.
    """
    shift = p_value = None
    n = thresholds.min_requests
    if len(green.predictions) >= n and len(blue.predictions) >= n:
        shift, p_value = signal_shift(green.predictions, blue.predictions)
    report = AlarmReport(
        green_requests=green.requests,
        blue_requests=blue.requests,
        server_error_rate=green.server_error_rate,
        client_error_rate=green.client_error_rate,
        latency_p99_ms=green.latency_p99_ms,
        signal_shift=shift,
        signal_p_value=p_value,
    )
    enough = green.requests >= n or (final and green.requests > 0)
    if enough and green.server_error_rate > thresholds.max_5xx_rate:
        report.fired = "5xx_rate"
        report.reason = (
            f"green's 5xx/model-error rate {green.server_error_rate:.1%} over "
            f"{green.requests} requests exceeds {thresholds.max_5xx_rate:.1%}"
        )
    elif enough and green.client_error_rate > thresholds.max_4xx_rate:
        report.fired = "4xx_rate"
        report.reason = (
            f"green's 4xx rate {green.client_error_rate:.1%} over {green.requests} "
            f"requests exceeds {thresholds.max_4xx_rate:.1%} (blue: "
            f"{blue.client_error_rate:.1%})"
        )
    elif (
        green.requests >= n
        and green.latency_p99_ms is not None
        and green.latency_p99_ms > thresholds.max_latency_p99_ms
    ):
        report.fired = "latency_p99"
        report.reason = (
            f"green's latency p99 {green.latency_p99_ms:.1f} ms exceeds "
            f"{thresholds.max_latency_p99_ms:.1f} ms (blue p99: "
            f"{blue.latency_p99_ms if blue.latency_p99_ms is not None else float('nan'):.1f} ms)"
        )
    elif (
        shift is not None
        and p_value is not None
        and shift > thresholds.max_signal_shift
        and p_value < _SIGNAL_P_VALUE
    ):
        report.fired = "model_signal"
        report.reason = (
            f"green's predictions differ from blue's on the same live traffic: KS statistic "
            f"{shift:.3f} > {thresholds.max_signal_shift} (p={p_value:.2g}; green mean "
            f"{_mean(green.predictions):.4g}, blue mean {_mean(blue.predictions):.4g})"
        )
    return report


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan
