"""Pipelines declared once (ordered steps over the stage functions), and their runners.

The Prefect flows, the MLproject entry points and the Kubeflow export are built from these
declarations; see :mod:`mlops.pipelines.spec`.
"""

from __future__ import annotations

from mlops.errors import ConfigError
from mlops.pipelines.deployment import DEPLOYMENT
from mlops.pipelines.monitoring import MONITORING
from mlops.pipelines.spec import Param, Pipeline, RetryClass, Step, StepContext, run_step
from mlops.pipelines.training import TRAINING, run_training_pipeline

__all__ = [
    "DEPLOYMENT",
    "MONITORING",
    "PIPELINES",
    "TRAINING",
    "Param",
    "Pipeline",
    "RetryClass",
    "Step",
    "StepContext",
    "get_pipeline",
    "run_step",
    "run_training_pipeline",
]

PIPELINES: dict[str, Pipeline] = {p.name: p for p in (TRAINING, DEPLOYMENT, MONITORING)}


def get_pipeline(name: str) -> Pipeline:
    """The pipeline declared as ``name``."""
    try:
        return PIPELINES[name]
    except KeyError:
        raise ConfigError(
            f"no pipeline {name!r}; declared: {', '.join(sorted(PIPELINES))}"
        ) from None
