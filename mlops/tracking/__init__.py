"""MLflow conventions: where runs go, what they are tagged with, how to connect."""

from __future__ import annotations

from mlops.tracking.conventions import (
    ALIAS_CHALLENGER,
    ALIAS_CHAMPION,
    EXPERIMENT_KIND_TRAINING,
    Events,
    Stages,
    Tags,
    batch_experiment,
    deployments_experiment,
    experiment_description,
    model_resource_id,
    monitoring_experiment,
    training_experiment,
)
from mlops.tracking.datasets import (
    SPLIT_CONTEXTS,
    DatasetRef,
    log_datasets,
    model_metrics,
    run_datasets,
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
    "EXPERIMENT_KIND_TRAINING",
    "SPLIT_CONTEXTS",
    "DatasetRef",
    "Events",
    "Stages",
    "Tags",
    "batch_experiment",
    "connect",
    "deployments_experiment",
    "ensure_experiment",
    "experiment_description",
    "finish_run",
    "log_datasets",
    "log_summary_run",
    "model_metrics",
    "model_resource_id",
    "monitoring_experiment",
    "run_datasets",
    "start_run",
    "training_experiment",
]
