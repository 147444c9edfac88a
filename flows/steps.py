"""Prefect tasks made from a pipeline's declaration (:mod:`mlops.pipelines`): one task per
step, named after it, retried when its retry class is ``transient``."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlops.errors import ConfigError, DataError, DatasetNotFoundError, GateFailedError
from mlops.pipelines import Pipeline, Step, StepContext
from mlops.pipelines.spec import StepCall

__all__ = ["TASK_OPTIONS", "step_tasks", "worth_retrying"]

_ROUND = re.compile(r"^\[(\d+)\]")
TASK_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


def worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Retry what may pass next time (S3 reads, the tracking store), not bad data or settings."""
    exc = state.data
    if isinstance(exc, ConfigError | GateFailedError):
        return False
    if isinstance(exc, DataError):
        # Only a failed read may pass later: it wraps the network/S3 error. Bad content (a
        # missing column, an unparseable file: ValueErrors underneath) fails the same way again.
        cause = exc.__cause__
        return (
            cause is not None
            and not isinstance(cause, ValueError)
            and not isinstance(exc, DatasetNotFoundError)
        )
    return True


_RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": 5,
    "retry_condition_fn": worth_retrying,
}


def _step_task(step: Step) -> Any:
    options = {**TASK_OPTIONS, **(_RETRIES if step.retry == "transient" else {})}

    def run_step(context: StepContext, inputs: dict[str, BaseModel]) -> BaseModel:
        logger = get_run_logger()

        def on_log(line: str) -> None:  # a job's output; of training rounds every 10th
            match = _ROUND.match(line)
            if match is None or int(match.group(1)) % 10 == 0:
                logger.info("%s", line)

        return step.stage(replace(context, on_log=on_log), **inputs)

    run_step.__doc__ = step.doc
    return task(name=step.name, description=step.doc, **options)(run_step)


def step_tasks(pipeline: Pipeline) -> tuple[dict[str, Any], StepCall]:
    """One task per step of ``pipeline``, and the ``call`` that runs a step as its task."""
    tasks = {step.name: _step_task(step) for step in pipeline.steps}

    def as_task(step: Step, context: StepContext, inputs: dict[str, BaseModel]) -> BaseModel:
        return tasks[step.name](context, inputs)

    return tasks, as_task
