"""The small, JSON-serializable results that stages hand to each other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mlops.types import Task

__all__ = [
    "BaselineResult",
    "EvaluationResult",
    "PipelineResult",
    "PreparedData",
    "RegisteredModel",
    "TrainedModel",
]


class PreparedData(BaseModel):
    """Train/validation/test splits written as parquet in one folder."""

    uri: str = Field(description="folder holding train/validation/test.parquet")
    source: str = Field(description="builtin:<name> or the path/URI that was read")
    digest: str = Field(description="sha256 of the prepared table and the split settings")
    target: str
    task: Task
    task_inferred: bool
    task_reason: str
    features: list[str]
    classes: list[Any] = Field(default_factory=list)
    rows: dict[str, int]
    notes: list[str] = Field(default_factory=list)

    def split_path(self, split: str) -> Path:
        """Path of one split's parquet file."""
        return Path(self.uri) / f"{split}.parquet"

    @classmethod
    def load(cls, uri: str) -> PreparedData:
        """Read the metadata that :func:`mlops.stages.prepare` wrote next to the splits."""
        from mlops.errors import DataError

        path = Path(uri.removeprefix("file://")) / "metadata.json"
        if not path.is_file():
            raise DataError(
                f"{uri} is not a prepared-data folder (no metadata.json); "
                "run `mlops` prepare (or the MLproject entry point `prepare`) first"
            )
        return cls.model_validate(json.loads(path.read_text()))


class TrainedModel(BaseModel):
    """A model trained by a training job and logged to MLflow."""

    model_name: str
    run_id: str
    model_uri: str = Field(description="MLflow URI of the logged model (models:/<model_id>)")
    model_id: str | None = None
    job_name: str
    job_arn: str | None = Field(None, description="the training job's ARN (SageMaker)")
    best_iteration: int
    rounds: int
    hyperparameters: dict[str, Any]
    fingerprint: str = Field(description="sha256 of data, parameters and code version")
    duration_s: float


class EvaluationResult(BaseModel):
    """Test-split metrics and the quality gate's decision."""

    metrics: dict[str, float]
    passed: bool
    reasons: list[str] = Field(default_factory=list)
    champion_version: str | None = None
    champion_metrics: dict[str, float] | None = None
    champion_note: str | None = None


class BaselineResult(BaseModel):
    """Where the monitoring baseline was logged."""

    uri: str = Field(description="artifact URI of the baseline folder")
    statistics_uri: str
    constraints_uri: str
    reference_uri: str
    reference_rows: int


class RegisteredModel(BaseModel):
    """The registry entry made (or found) for the trained model."""

    name: str
    version: str
    created: bool
    aliases: list[str]
    approval: str
    model_uri: str


class PipelineResult(BaseModel):
    """Everything the training pipeline produced."""

    run_id: str
    experiment: str
    prepared: PreparedData
    trained: TrainedModel
    evaluation: EvaluationResult
    baseline: BaselineResult
    registered: RegisteredModel
