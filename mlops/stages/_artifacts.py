"""Stage results as JSON artifacts of the run, so a later stage can pick them up by run id."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from mlops.errors import MlopsError

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["load_result", "save_result"]

ResultT = TypeVar("ResultT", bound=BaseModel)
_FOLDER = "mlops"


def save_result(client: MlflowClient, run_id: str, stage: str, result: BaseModel) -> None:
    """Log ``result`` as ``mlops/<stage>.json`` in the run."""
    client.log_text(run_id, result.model_dump_json(indent=2), f"{_FOLDER}/{stage}.json")


def load_result(client: MlflowClient, run_id: str, stage: str, cls: type[ResultT]) -> ResultT:
    """Read what :func:`save_result` logged; say which stage to run when it is missing."""
    import mlflow

    uri = f"runs:/{run_id}/{_FOLDER}/{stage}.json"
    try:
        text = mlflow.artifacts.load_text(uri)
    except Exception:  # MLflow raises several kinds for a missing artifact
        raise MlopsError(
            f"run {run_id} has no {stage} result ({uri}); run the {stage} stage on it first"
        ) from None
    return cls.model_validate(json.loads(text))
