"""Blue/green rollouts with auto-rollback onto local endpoints, and their records."""

from __future__ import annotations

from mlops.rollout.alarms import (
    AlarmReport,
    PairedSignal,
    VariantWindow,
    evaluate_alarms,
    paired_signal,
)
from mlops.rollout.controller import RolloutResult, RolloutStep, run_rollout, variant_name_for
from mlops.rollout.record import plot_rollout, record_rollout

__all__ = [
    "AlarmReport",
    "PairedSignal",
    "RolloutResult",
    "RolloutStep",
    "VariantWindow",
    "evaluate_alarms",
    "paired_signal",
    "plot_rollout",
    "record_rollout",
    "run_rollout",
    "variant_name_for",
]
