"""The compute backend Protocol: what a stage asks of local subprocesses or SageMaker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["ComputeBackend", "LogSink", "TrainingJobResult", "TrainingJobSpec"]

LogSink = Callable[[str], None]
"""Receives each line the job prints, as it prints it."""


@dataclass(frozen=True)
class TrainingJobSpec:
    """A training job in SageMaker's terms.

    Attributes:
        job_name: unique name; also the job's folder (local) or TrainingJobName (SageMaker).
        channels: channel name -> local folder/file or S3 URI holding that channel's data.
        hyperparameters: passed to the program as ``input/config/hyperparameters.json``
            (every value as a string, as SageMaker does).
        entry_point: python module run as the training program.
        max_runtime_s: the job is stopped after this long (StoppingCondition).
    """

    job_name: str
    channels: dict[str, str]
    hyperparameters: dict[str, Any]
    entry_point: str = "mlops.training.entry"
    max_runtime_s: int = 24 * 3600
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingJobResult:
    """What a finished training job left behind."""

    job_name: str
    status: Literal["Completed", "Failed", "Stopped"]
    model_dir: Path
    output_dir: Path
    duration_s: float
    failure_reason: str | None = None


@runtime_checkable
class ComputeBackend(Protocol):
    """Runs the heavy work of the stages. Implementations: ``local`` and ``sagemaker``."""

    name: str

    def run_training_job(
        self, spec: TrainingJobSpec, *, on_log: LogSink | None = None
    ) -> TrainingJobResult:
        """Run a training job to the end and return where its model and output are."""
        ...
