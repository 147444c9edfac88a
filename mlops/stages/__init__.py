"""One function per lifecycle stage: explicit inputs in, a small result object out."""

from __future__ import annotations

from mlops.stages._artifacts import load_result, save_result
from mlops.stages.baseline import baseline
from mlops.stages.evaluate import evaluate
from mlops.stages.pipeline import (
    close_training_run,
    open_training_run,
    record_prepared,
    training_run,
)
from mlops.stages.prepare import prepare
from mlops.stages.register import register
from mlops.stages.results import (
    BaselineResult,
    EvaluationResult,
    PipelineResult,
    PreparedData,
    RegisteredModel,
    TrainedModel,
)
from mlops.stages.train import train

__all__ = [
    "BaselineResult",
    "EvaluationResult",
    "PipelineResult",
    "PreparedData",
    "RegisteredModel",
    "TrainedModel",
    "baseline",
    "close_training_run",
    "evaluate",
    "load_result",
    "open_training_run",
    "prepare",
    "record_prepared",
    "register",
    "save_result",
    "train",
    "training_run",
]
