"""Which gate thresholds apply to one training: per task, per model, and for one run.

Layers, later ones winning bound by bound (``min`` and ``max`` separately):

1. ``[gate.thresholds.<metric>]``: project-wide, applied only to tasks that produce the metric
   (one ``mlops.toml`` serves regression and classification models alike);
2. ``[gate.<task>.thresholds.<metric>]``: one task's (``regression``, ``binary``, ``multiclass``);
3. ``[gate.models.<name>.thresholds.<metric>]``: one registered model's;
4. ``gate.overrides``: one run's, from ``mlops train --gate METRIC>=VALUE``.

When no layer sets a threshold for the task, the task's defaults apply. Everything that can
be wrong (a metric no model produces, a task table naming another task's metric, a bound
missing, min above max) is found by :func:`validate_gate` before any work is done; what
depends on the task (a model's or run's threshold on a metric its task lacks) is found by
:func:`resolve_thresholds` as soon as the task is known, before training.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlops.errors import ConfigError
from mlops.evaluation.metrics import DEFAULT_THRESHOLDS, METRIC_NAMES, metric_names
from mlops.settings_sections import GateSettings, Threshold
from mlops.types import Task

__all__ = [
    "ResolvedThresholds",
    "merge_overrides",
    "parse_gate_option",
    "resolve_thresholds",
    "validate_gate",
]

_ALL_METRICS: tuple[str, ...] = tuple(
    dict.fromkeys(m for names in METRIC_NAMES.values() for m in names)
)
_GATE_OPTION = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>>=|<=)\s*(?P<value>\S+)\s*$"
)


@dataclass(frozen=True)
class ResolvedThresholds:
    """The thresholds in force for one training.

    Attributes:
        thresholds: metric -> bound.
        sources: metric -> where its bound was set (``gate.multiclass.thresholds.accuracy``,
            ``--gate``, ``default for regression``), for the gate's messages.
    """

    thresholds: dict[str, Threshold] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)


def parse_gate_option(text: str) -> tuple[str, Threshold]:
    """Parse one ``--gate`` value such as ``r2>=0.3`` or ``rmse<=5``.

    Raises:
        ConfigError: the value is not ``METRIC>=NUMBER`` or ``METRIC<=NUMBER`` with a known
            metric and a finite number.
    """
    match = _GATE_OPTION.match(text)
    example = "write e.g. --gate 'r2>=0.3' or --gate 'rmse<=5'"
    if match is None:
        raise ConfigError(f"--gate {text!r} is not METRIC>=NUMBER or METRIC<=NUMBER; {example}")
    metric, op, raw = match["metric"], match["op"], match["value"]
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"--gate {text!r}: {raw!r} is not a finite number; {example}")
    if metric not in _ALL_METRICS:
        raise ConfigError(
            f"--gate {text!r}: no model produces a metric {metric!r}; use one of "
            f"{', '.join(_ALL_METRICS)}"
        )
    return metric, Threshold(min=value) if op == ">=" else Threshold(max=value)


def merge_overrides(
    overrides: Mapping[str, Threshold], more: list[tuple[str, Threshold]]
) -> dict[str, Threshold]:
    """Add parsed ``--gate`` values to ``overrides`` bound by bound (the last one wins)."""
    merged = dict(overrides)
    for metric, threshold in more:
        merged[metric] = _merge(merged.get(metric), threshold)
    return merged


def _merge(old: Threshold | None, new: Threshold) -> Threshold:
    if old is None:
        return new
    return Threshold(
        min=new.min if new.min is not None else old.min,
        max=new.max if new.max is not None else old.max,
    )


def _layers(gate: GateSettings, model_name: str | None) -> list[tuple[str, Task | None, dict]]:
    """(label prefix, task the layer is bound to or None, thresholds), lowest priority first."""
    layers: list[tuple[str, Task | None, dict]] = [("gate.thresholds", None, gate.thresholds)]
    for task in Task:
        layers.append((f"gate.{task}.thresholds", task, getattr(gate, str(task)).thresholds))
    if model_name is not None and model_name in gate.models:
        layers.append(
            (f"gate.models.{model_name}.thresholds", None, gate.models[model_name].thresholds)
        )
    layers.append(("--gate", None, gate.overrides))
    return layers


def _label(prefix: str, metric: str) -> str:
    return f"--gate {metric}" if prefix == "--gate" else f"{prefix}.{metric}"


def _check_bounds(label: str, threshold: Threshold) -> None:
    if threshold.min is None and threshold.max is None:
        raise ConfigError(
            f"{label} sets neither min nor max; set at least one bound, e.g. {{min = 0.5}} "
            "(the keys are `min` and `max`)"
        )
    if threshold.min is not None and threshold.max is not None and threshold.min > threshold.max:
        raise ConfigError(
            f"{label} has min {threshold.min} above max {threshold.max}; no model can pass it, "
            "so swap or fix the bounds"
        )


def validate_gate(gate: GateSettings) -> None:
    """Check every threshold that can be checked without knowing the task.

    Raises:
        ConfigError: naming the threshold (its table in mlops.toml, or ``--gate``) and the fix.
    """
    model_layers = [
        (f"gate.models.{name}.thresholds", None, table.thresholds)
        for name, table in gate.models.items()
    ]
    for prefix, task, thresholds in _layers(gate, None) + model_layers:
        for metric, threshold in thresholds.items():
            label = _label(prefix, metric)
            if task is not None and metric not in metric_names(task):
                raise ConfigError(
                    f"{label}: a {task} model does not produce {metric!r}; use one of "
                    f"{', '.join(metric_names(task))}"
                    + _elsewhere(metric, f"[gate.{{task}}.thresholds.{metric}]")
                )
            if metric not in _ALL_METRICS:
                raise ConfigError(
                    f"{label}: no model produces a metric {metric!r}; use one of "
                    f"{', '.join(_ALL_METRICS)}"
                )
            _check_bounds(label, threshold)


def _elsewhere(metric: str, template: str) -> str:
    tasks = [str(t) for t in Task if metric in metric_names(t)]
    if not tasks:
        return ""
    return " (or move it to " + " / ".join(template.format(task=t) for t in tasks) + ")"


def resolve_thresholds(
    gate: GateSettings, task: Task | str, model_name: str | None = None
) -> ResolvedThresholds:
    """The thresholds a ``task`` model named ``model_name`` must meet, and where each was set.

    Raises:
        ConfigError: as :func:`validate_gate`, and when the model's table or ``--gate`` names
            a metric this task does not produce.
    """
    task = Task(task)
    validate_gate(gate)
    available = metric_names(task)
    resolved = ResolvedThresholds()
    for prefix, bound_to, thresholds in _layers(gate, model_name):
        if bound_to is not None and bound_to is not task:
            continue
        for metric, threshold in thresholds.items():
            label = _label(prefix, metric)
            if metric not in available:
                if prefix == "gate.thresholds":
                    continue  # project-wide: applies only to the tasks that produce it
                who = f"model {model_name!r} is {task}" if model_name else f"the task is {task}"
                raise ConfigError(
                    f"{label}: {who}, which does not produce {metric!r}; use one of "
                    f"{', '.join(available)}"
                )
            resolved.thresholds[metric] = _merge(resolved.thresholds.get(metric), threshold)
            resolved.sources[metric] = label
    if not resolved.thresholds:
        for metric, threshold in DEFAULT_THRESHOLDS[task].items():
            resolved.thresholds[metric] = threshold
            resolved.sources[metric] = f"default for {task}; set [gate.{task}.thresholds]"
    for metric, threshold in resolved.thresholds.items():
        _check_bounds(resolved.sources[metric], threshold)
    return resolved
