"""Blue/green rollouts with auto-rollback onto local endpoints, and their records."""

from __future__ import annotations

from mlops.rollout.alarms import AlarmReport, VariantWindow, evaluate_alarms, signal_shift
from mlops.rollout.controller import RolloutResult, RolloutStep, run_rollout, variant_name_for
from mlops.rollout.policy import AlarmThresholds, BlueGreenPolicy, TrafficRouting
from mlops.rollout.record import plot_rollout, record_rollout

__all__ = [
    "AlarmReport",
    "AlarmThresholds",
    "BlueGreenPolicy",
    "RolloutResult",
    "RolloutStep",
    "TrafficRouting",
    "VariantWindow",
    "evaluate_alarms",
    "plot_rollout",
    "record_rollout",
    "run_rollout",
    "signal_shift",
    "variant_name_for",
]
