"""MLflow conventions: where runs go, what they are tagged with, how to connect."""

from __future__ import annotations

from mlops.tracking.conventions import (
    ALIAS_CHALLENGER,
    ALIAS_CHAMPION,
    Events,
    Tags,
    batch_experiment,
    deployments_experiment,
    model_resource_id,
    monitoring_experiment,
    training_experiment,
)
from mlops.tracking.store import (
    connect,
    ensure_experiment,
    finish_run,
    log_summary_run,
    start_run,
)

__all__ = [
    "ALIAS_CHALLENGER",
    "ALIAS_CHAMPION",
    "Events",
    "Tags",
    "batch_experiment",
    "connect",
    "deployments_experiment",
    "ensure_experiment",
    "finish_run",
    "log_summary_run",
    "model_resource_id",
    "monitoring_experiment",
    "start_run",
    "training_experiment",
]
