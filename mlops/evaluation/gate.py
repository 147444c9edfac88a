"""The quality gate between evaluation and registration.

Two kinds of checks, all of which must pass:

* absolute thresholds on metrics (``gate.thresholds``; the task's defaults when empty);
* no regression against the current champion on the task's primary metric, evaluated on the
  same test split, beyond a relative ``margin`` (``gate.champion_margin``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from mlops.errors import ConfigError, GateFailedError
from mlops.evaluation.metrics import DEFAULT_THRESHOLDS, PRIMARY_METRIC, metric_names
from mlops.settings_sections import Threshold
from mlops.types import Task

__all__ = ["GateCheck", "GateResult", "check_gate"]


@dataclass(frozen=True)
class GateCheck:
    """One comparison of a metric with a bound.

    Attributes:
        name: what was checked, e.g. ``threshold.r2.min`` or ``champion.rmse``.
        metric: the metric's name.
        value: the challenger's value.
        bound: the bound the value was compared with (``nan`` when the check was skipped).
        op: ``"<="`` or ``">="``: the value must be ``op`` the bound (``""`` for the
            ``finite.<metric>`` check that fails a non-finite metric no other check covers).
        passed: whether it held.
        detail: one human sentence about the outcome.
    """

    name: str
    metric: str
    value: float
    bound: float
    op: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable data (non-finite numbers become ``None``)."""
        data = asdict(self)
        data["value"] = _finite_or_none(self.value)
        data["bound"] = _finite_or_none(self.bound)
        return data


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict.

    Attributes:
        passed: ``True`` when every check passed.
        checks: every check made, passed or not.
        reasons: one human sentence per failed check.
    """

    passed: bool
    checks: list[GateCheck] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable data."""
        return {
            "passed": self.passed,
            "checks": [c.to_dict() for c in self.checks],
            "reasons": list(self.reasons),
        }

    def raise_for_failure(self) -> None:
        """Raise :class:`GateFailedError` carrying the reasons if the gate failed."""
        if not self.passed:
            raise GateFailedError(
                "the challenger did not pass the quality gate: " + "; ".join(self.reasons),
                reasons=self.reasons,
            )


def _finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    return f"{x:.4f}" if x == 0 or 1e-3 <= abs(x) < 1e6 else f"{x:.4e}"


def _as_threshold(metric: str, raw: Any) -> Threshold:
    if isinstance(raw, Threshold):
        threshold = raw
    elif isinstance(raw, Mapping):
        try:
            threshold = Threshold.model_validate(dict(raw))
        except Exception as exc:
            raise ConfigError(
                f"gate.thresholds.{metric} is invalid ({exc}); give it min and/or max numbers"
            ) from None
    else:
        raise ConfigError(
            f"gate.thresholds.{metric} is {raw!r}; give a table with min and/or max, "
            f"e.g. {{min = 0.5}}"
        )
    if threshold.min is None and threshold.max is None:
        raise ConfigError(
            f"gate.thresholds.{metric} sets neither min nor max; set at least one bound "
            "(note the keys are `min` and `max`)"
        )
    return threshold


def _compare(value: float, op: str, bound: float) -> bool:
    if not (math.isfinite(value) and math.isfinite(bound)):
        return False
    return value >= bound if op == ">=" else value <= bound


def _threshold_checks(
    metric: str, value: float, threshold: Threshold, where: str
) -> list[tuple[GateCheck, str | None]]:
    out: list[tuple[GateCheck, str | None]] = []
    for key, op, word in (("min", ">=", "below the minimum"), ("max", "<=", "above the maximum")):
        bound = getattr(threshold, key)
        if bound is None:
            continue
        bound = float(bound)
        passed = _compare(value, op, bound)
        source = f"{where}.{key}" if where.startswith("gate.") else where
        if not math.isfinite(value):
            detail = (
                f"{metric} = {value} is not a finite number, so it cannot meet {op} "
                f"{_fmt(bound)} ({source}); check the model and the test split"
            )
        elif passed:
            detail = f"{metric} = {_fmt(value)} meets {op} {_fmt(bound)} ({source})"
        else:
            detail = f"{metric} = {_fmt(value)} is {word} {_fmt(bound)} ({source})"
        check = GateCheck(f"threshold.{metric}.{key}", metric, value, bound, op, passed, detail)
        out.append((check, None if passed else detail))
    return out


def _champion_check(
    task: Task,
    metrics: Mapping[str, float],
    champion_metrics: Mapping[str, float],
    champion_version: str | None,
    margin: float,
) -> tuple[GateCheck, str | None]:
    metric, direction = PRIMARY_METRIC[task]
    value = float(metrics.get(metric, math.nan))
    who = f"champion version {champion_version}" if champion_version else "the champion"
    op = "<=" if direction == "min" else ">="
    raw_champ = champion_metrics.get(metric)
    champ = float(raw_champ) if raw_champ is not None else math.nan
    name = f"champion.{metric}"
    if not math.isfinite(champ):
        detail = (
            f"{who} has no finite {metric} on this test split ({raw_champ!r}); "
            "the champion comparison was skipped"
        )
        return GateCheck(name, metric, value, math.nan, op, True, detail), None
    # The bound moves away from the champion by margin * |champion| in the worse direction,
    # so negative values and a champion of 0 (the challenger must then be at least as good)
    # are handled alike.
    slack = margin * abs(champ)
    bound = champ + slack if direction == "min" else champ - slack
    passed = _compare(value, op, bound)
    pct = f"{margin:.0%}" if margin * 100 == round(margin * 100) else f"{margin:.2%}"
    if not math.isfinite(value):
        detail = (
            f"{metric} = {value} is not a finite number, so it cannot be compared with "
            f"{who}'s {_fmt(champ)}; check the model and the test split"
        )
    elif passed:
        detail = (
            f"{metric} = {_fmt(value)} is within the {pct} margin of {who}'s {_fmt(champ)} "
            f"(must be {op} {_fmt(bound)})"
        )
    else:
        worse = "higher" if direction == "min" else "lower"
        detail = (
            f"{metric} = {_fmt(value)} is {worse} than {who}'s {_fmt(champ)} by more than the "
            f"{pct} margin (must be {op} {_fmt(bound)}; gate.champion_margin)"
        )
    return GateCheck(name, metric, value, bound, op, passed, detail), None if passed else detail


def check_gate(
    task: Task | str,
    metrics: Mapping[str, float],
    *,
    thresholds: Mapping[str, Threshold | Mapping[str, Any]] | None = None,
    champion_metrics: Mapping[str, float] | None = None,
    champion_version: str | None = None,
    margin: float = 0.05,
    sources: Mapping[str, str] | None = None,
) -> GateResult:
    """Decide whether a challenger may be registered.

    Args:
        task: the kind of problem.
        metrics: the challenger's metrics on the test split (from ``compute_metrics``).
        thresholds: metric -> absolute bound; the task's defaults when ``None`` or empty.
        champion_metrics: the current champion's metrics on the same test split, or ``None``
            when there is no champion yet.
        champion_version: the champion's version, used in messages only.
        margin: how much worse than the champion the challenger may be on the primary metric,
            as a fraction of the champion's value (0.05 = 5%).
        sources: metric -> where its threshold was set, for the messages (from
            :func:`mlops.evaluation.thresholds.resolve_thresholds`); ``gate.thresholds.<metric>``
            when left out.

    Returns:
        The verdict with every check; non-finite challenger values fail their checks.

    Raises:
        ConfigError: a threshold names a metric the task does not produce, sets no bound,
            or ``margin`` is negative or not finite.
    """
    task = Task(task)
    if not math.isfinite(margin) or margin < 0:
        raise ConfigError(
            f"gate.champion_margin is {margin}; set it to a fraction >= 0, e.g. 0.05 for 5%"
        )
    available = metric_names(task)
    chosen = thresholds if thresholds else DEFAULT_THRESHOLDS[task]
    unknown = sorted(m for m in chosen if m not in available)
    if unknown:
        raise ConfigError(
            f"gate.thresholds names {', '.join(repr(m) for m in unknown)}, which a {task} model "
            f"does not produce; use one of {', '.join(available)}"
        )

    results: list[tuple[GateCheck, str | None]] = []
    for metric, raw in chosen.items():
        threshold = _as_threshold(metric, raw)
        value = float(metrics[metric]) if metrics.get(metric) is not None else math.nan
        where = (sources or {}).get(metric, f"gate.thresholds.{metric}")
        results.extend(_threshold_checks(metric, value, threshold, where))
    if champion_metrics is not None:
        results.append(
            _champion_check(task, metrics, champion_metrics, champion_version, float(margin))
        )

    checked = {check.metric for check, _ in results}
    for metric in available:
        raw_value = metrics.get(metric)
        if metric in checked or raw_value is None or math.isfinite(float(raw_value)):
            continue
        detail = (
            f"{metric} = {raw_value} is not a finite number; the model or the test split is "
            "broken (too few rows, a single class, or NaN predictions)"
        )
        results.append(
            (
                GateCheck(
                    f"finite.{metric}", metric, float(raw_value), math.nan, "", False, detail
                ),
                detail,
            )
        )

    checks = [check for check, _ in results]
    reasons = [reason for _, reason in results if reason is not None]
    return GateResult(passed=all(c.passed for c in checks), checks=checks, reasons=reasons)
