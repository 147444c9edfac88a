"""Captured traffic for tests, written exactly as the model server writes it.

SageMaker's format, one JSON line per request, in its layout
(``<dest>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<uuid>.jsonl``), with the model's own
predictions, so the monitor reads what a live endpoint would have left. The variant
``v<version>`` maps to that version by convention.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from mlops.settings import Settings

__all__ = ["FEATURES", "predict", "taxi_rows", "write_capture"]

FEATURES = ["duration_minutes", "passenger_count", "trip_distance"]


def taxi_rows(rows: int, *, shift: float, seed: int) -> pd.DataFrame:
    """A taxi batch after feature engineering (``shift`` std devs away from training)."""
    from mlops.data.builtin import engineer_features, make_batch

    batch = make_batch("taxi", rows=rows, shift=shift, seed=seed)
    frame, _ = engineer_features(batch, "total_amount")
    return frame


def predict(settings: Settings, model_name: str, version: str, frame: pd.DataFrame) -> np.ndarray:
    """What ``model_name`` v``version`` answers for the frame's features."""
    import mlflow.xgboost

    from mlops.tracking import connect

    connect(settings)
    model = mlflow.xgboost.load_model(f"models:/{model_name}/{version}")
    return np.asarray(model.predict(frame[FEATURES]), dtype=float)


def write_capture(
    dest: Path,
    endpoint: str,
    variant: str,
    frame: pd.DataFrame,
    predictions: np.ndarray,
    start: datetime,
    *,
    extra_lines: Sequence[bytes] = (),
) -> list[str]:
    """One SageMaker capture record per row, one request a second from ``start``.

    ``extra_lines`` go, as they are, at the end of the first file. Returns the inference ids.
    """
    ids = []
    files: dict[Path, list[bytes]] = {}
    for i, (row, pred) in enumerate(
        zip(frame[FEATURES].itertuples(index=False), predictions, strict=True)
    ):
        when = start + timedelta(seconds=i)
        inference_id = f"req-{uuid.uuid4()}"
        ids.append(inference_id)
        record = {
            "captureData": {
                "endpointInput": {
                    "observedContentType": "text/csv",
                    "mode": "INPUT",
                    "data": ",".join(
                        repr(float(v)) if isinstance(v, float) else str(v) for v in row
                    )
                    + "\n",
                    "encoding": "CSV",
                },
                "endpointOutput": {
                    "observedContentType": "text/csv; charset=utf-8",
                    "mode": "OUTPUT",
                    "data": repr(float(pred)),
                    "encoding": "CSV",
                },
            },
            "eventMetadata": {
                "eventId": str(uuid.uuid4()),
                "inferenceId": inference_id,
                "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "eventVersion": "0",
        }
        folder = dest / endpoint / variant / when.strftime("%Y/%m/%d/%H")
        name = (
            folder
            / f"{when.strftime('%M-00-000')}-{uuid.uuid5(uuid.NAMESPACE_DNS, str(folder))}.jsonl"
        )
        files.setdefault(name, []).append(json.dumps(record).encode() + b"\n")
    for index, (path, lines) in enumerate(sorted(files.items())):
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as handle:
            handle.writelines(lines)
            if index == 0:
                handle.writelines(extra_lines)
    return ids
