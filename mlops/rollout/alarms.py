"""Auto-rollback alarms: error rates, latency and a model-signal gate on green's traffic.

The model-signal gate compares green with blue on the same requests: during a bake the
gateway mirrors a sample of green's requests to blue
(:mod:`~mlops.backends.local.gateway.pairing`), so each pair holds green's and blue's
prediction for one row. The statistic is the share of pairs that differ (:func:`paired_signal`):

* regression: a pair differs when ``|green - blue| > signal_tolerance * max(|blue|, m)``,
  ``m`` the median ``|blue|`` of the pairs. Relative to blue's answer, but for answers
  near zero relative to a typical one, so a tiny absolute difference never counts;
* classifiers (labels: class indices or names): a pair differs when the labels differ.

The gate fires when at least ``min_requests`` pairs were seen, more than
``max_signal_shift`` of them differ, and that many differing pairs would be unlikely
(one-sided binomial test, p < 0.01) if at most ``max_signal_shift`` of green's answers
differed from blue's; a few unlucky pairs early in a bake do not roll back.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from mlops.policy import AlarmThresholds

if TYPE_CHECKING:
    from mlops.backends import VariantMetrics

__all__ = [
    "AlarmReport",
    "Pair",
    "PairedSignal",
    "VariantWindow",
    "evaluate_alarms",
    "paired_signal",
    "signal_p_value",
]

# The signal gate fires only when the share is also unlikely to be sampling noise.
_SIGNAL_P_VALUE = 0.01

Prediction = float | str | None
Pair = tuple[Prediction, Prediction]
"""One row's (green, blue) predictions: numbers, class labels, ``None`` for no value."""


class VariantWindow(BaseModel):
    """What the gateway saw of one variant over a time window."""

    requests: int = 0
    status_2xx: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    model_errors: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None

    @classmethod
    def of(cls, metrics: VariantMetrics | None) -> VariantWindow:
        """Build from an endpoint backend's metrics of one variant (``None``: no traffic)."""
        if metrics is None:
            return cls()
        return cls(**dataclasses.asdict(metrics))

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
    signal_pairs: int = 0
    signal_differing_share: float | None = None
    signal_p_value: float | None = None
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
            "signal_pairs": float(self.signal_pairs),
            "signal_differing_share": self.signal_differing_share,
        }
        return {k: float(v) for k, v in values.items() if v is not None and _finite(v)}


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


class PairedSignal(BaseModel):
    """How green's predictions compare with blue's on the same rows."""

    pairs: int
    differing: int
    labels: bool
    median_relative_diff: float | None = None

    @property
    def share(self) -> float:
        """The share of pairs that differ (0 without pairs)."""
        return self.differing / self.pairs if self.pairs else 0.0


def paired_signal(
    pairs: Sequence[Pair], tolerance: float, *, labels: bool | None = None
) -> PairedSignal:
    """Count the pairs whose green prediction differs from blue's (see the module doc).

    Args:
        pairs: (green, blue) predictions of the same rows; pairs with no value on either
            side are left out, a value on one side only differs.
        tolerance: relative difference a regression pair may have (0.1: 10%).
        labels: compare as class labels (equal or not); ``None``: labels when a value is
            text or every value is a whole number (class indices), numbers otherwise.
    """
    kept = [(g, b) for g, b in pairs if g is not None or b is not None]
    if labels is None:
        values = [v for pair in kept for v in pair if v is not None]
        labels = bool(values) and all(isinstance(v, str) or float(v).is_integer() for v in values)
    if labels:
        differing = sum(1 for g, b in kept if _label(g) != _label(b))
        return PairedSignal(pairs=len(kept), differing=differing, labels=True)
    numeric = [
        (float(g), float(b))
        for g, b in kept
        if isinstance(g, float | int) and isinstance(b, float | int)
    ]
    odd = len(kept) - len(numeric)  # a value against none, or text against a number
    typical = statistics.median(abs(b) for _, b in numeric) if numeric else 0.0
    relative = []
    differing = odd
    for g, b in numeric:
        scale = max(abs(b), typical)
        diff = abs(g - b)
        rel = diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)
        relative.append(rel)
        if rel > tolerance:
            differing += 1
    return PairedSignal(
        pairs=len(kept),
        differing=differing,
        labels=False,
        median_relative_diff=statistics.median(relative) if relative else None,
    )


def _label(value: Prediction) -> Prediction:
    """A label as compared: ``1.0`` and ``1`` (or ``"1"``) are the same class."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def signal_p_value(differing: int, pairs: int, max_share: float) -> float:
    """One-sided binomial p-value of ``differing`` of ``pairs`` if at most ``max_share`` of
    green's answers differed from blue's (small: more differ than the gate allows)."""
    if pairs == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(differing, pairs, max_share, alternative="greater").pvalue)


def evaluate_alarms(
    green: VariantWindow,
    blue: VariantWindow,
    thresholds: AlarmThresholds,
    *,
    pairs: Sequence[Pair] = (),
    labels: bool | None = None,
    final: bool = False,
) -> AlarmReport:
    """Check green against the alarms.

    Rates and latency are judged once green has served ``min_requests``; before that a
    single early error does not roll back. The model-signal gate judges ``pairs`` (green's
    and blue's predictions of the same rows) once there are ``min_requests`` of them. With
    ``final`` (the end of a bake) the error alarms are judged on whatever green served.

    Args:
        green: what green served in the window.
        blue: what blue served in the window (for the reasons).
        thresholds: the alarms' thresholds.
        pairs: paired predictions of the window (see :func:`paired_signal`).
        labels: compare pairs as class labels; ``None``: decided from the values.
        final: the last reading of a bake.
    """
    n = thresholds.min_requests
    signal = paired_signal(pairs, thresholds.signal_tolerance, labels=labels)
    share = p_value = None
    if signal.pairs >= n:
        share = signal.share
        p_value = signal_p_value(signal.differing, signal.pairs, thresholds.max_signal_shift)
    report = AlarmReport(
        green_requests=green.requests,
        blue_requests=blue.requests,
        server_error_rate=green.server_error_rate,
        client_error_rate=green.client_error_rate,
        latency_p99_ms=green.latency_p99_ms,
        signal_pairs=signal.pairs,
        signal_differing_share=share,
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
        share is not None
        and p_value is not None
        and share > thresholds.max_signal_shift
        and p_value < _SIGNAL_P_VALUE
    ):
        report.fired = "model_signal"
        report.reason = _signal_reason(signal, thresholds, p_value)
    return report


def _signal_reason(signal: PairedSignal, thresholds: AlarmThresholds, p_value: float) -> str:
    if signal.labels:
        how = "have a different label"
    else:
        how = f"differ by more than {thresholds.signal_tolerance:.0%}"
    typical = ""
    if signal.median_relative_diff is not None:
        typical = f"; median relative difference {signal.median_relative_diff:.1%}"
    return (
        f"green's predictions differ from blue's on the same requests: {signal.differing} of "
        f"{signal.pairs} paired predictions ({signal.share:.0%}) {how}, over the "
        f"{thresholds.max_signal_shift:.0%} allowed (p={p_value:.2g}{typical})"
    )
