"""The datasets a run used, and metrics that say which model and dataset they measure.

MLflow 3 shows a logged model's metrics on the model's page, and lists under "Datasets used"
the datasets those metrics name (by name and digest, matched to the run's dataset inputs).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.data.dataset import Dataset
    from mlflow.entities import Metric

__all__ = [
    "CONTEXT_TAG",
    "SPLIT_CONTEXTS",
    "DatasetRef",
    "log_datasets",
    "model_metrics",
    "run_datasets",
]

CONTEXT_TAG = "mlflow.data.context"
# split name -> MLflow's dataset context
SPLIT_CONTEXTS = {"train": "training", "validation": "validation", "test": "testing"}


@dataclass(frozen=True)
class DatasetRef:
    """A dataset as a metric names it."""

    name: str
    digest: str


def log_datasets(
    client: MlflowClient, run_id: str, datasets: Mapping[str, Dataset]
) -> dict[str, DatasetRef]:
    """Log each dataset as an input of ``run_id`` under its context (``training``, ...).

    Returns:
        context → the dataset's name and digest.
    """
    from mlflow.entities import DatasetInput, InputTag

    with warnings.catch_warnings():
        # The entity carries the inferred schema; MLflow's hint that integer columns cannot
        # hold missing values is about model signatures, noise for a dataset's record.
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        inputs = [
            DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(CONTEXT_TAG, context)])
            for context, dataset in datasets.items()
        ]
    client.log_inputs(run_id, datasets=inputs)
    return {context: DatasetRef(d.name, d.digest) for context, d in datasets.items()}


def run_datasets(client: MlflowClient, run_id: str) -> dict[str, DatasetRef]:
    """The dataset inputs of ``run_id`` by context (the last one logged for a context)."""
    found: dict[str, DatasetRef] = {}
    for item in client.get_run(run_id).inputs.dataset_inputs or []:
        for tag in item.tags:
            if tag.key == CONTEXT_TAG:
                found[tag.value] = DatasetRef(item.dataset.name, item.dataset.digest)
    return found


def model_metrics(
    values: Mapping[str, float],
    *,
    run_id: str,
    model_id: str | None,
    dataset: DatasetRef | None = None,
    step: int = 0,
    timestamp_ms: int | None = None,
) -> list[Metric]:
    """Metrics of ``run_id`` that also belong to logged model ``model_id`` (when given),
    measured on ``dataset`` (when given)."""
    from mlflow.entities import Metric

    now = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    return [
        Metric(
            key,
            float(value),
            now,
            step,
            model_id=model_id,
            dataset_name=dataset.name if dataset else None,
            dataset_digest=dataset.digest if dataset else None,
            run_id=run_id,
        )
        for key, value in values.items()
    ]
