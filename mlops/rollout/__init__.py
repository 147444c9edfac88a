"""Blue/green rollouts with auto-rollback over an endpoint backend, and their records.

The policy a rollout runs is :mod:`mlops.policy`'s (the settings hold the same object); its
classes are part of this package's public names too, as the rollout's input.
"""

from __future__ import annotations

from mlops.policy import AlarmThresholds, BlueGreenPolicy, TrafficRouting
from mlops.rollout.alarms import (
    AlarmReport,
    PairedSignal,
    VariantWindow,
    evaluate_alarms,
    paired_signal,
)
from mlops.rollout.controller import run_rollout, variant_name_for
from mlops.rollout.record import plot_rollout, record_rollout
from mlops.rollout.results import RolloutResult, RolloutStep

__all__ = [
    "AlarmReport",
    "AlarmThresholds",
    "BlueGreenPolicy",
    "PairedSignal",
    "RolloutResult",
    "RolloutStep",
    "TrafficRouting",
    "VariantWindow",
    "evaluate_alarms",
    "paired_signal",
    "plot_rollout",
    "record_rollout",
    "run_rollout",
    "variant_name_for",
]
