"""Batch predictions by a transform job of the compute backend (``[batch] runner``).

After the same checks as the local path (they run first, and a refused input starts no
job), the model's features are written as header-less CSV in the model's feature order
(derived features computed as for local predictions), one transform job scores them
(SageMaker: ``CreateTransformJob`` with ``BatchDataCaptureConfig`` to the capture
destination; local: the serving program's batch mode), and its answers, one line per
record in input order (``AssembleWith=Line``), are joined back to the input's id columns
and inference ids and written where the local path writes them.
"""

from __future__ import annotations

import logging
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import BackendError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlops.settings import Settings
    from mlops.stages._batch_checks import Checked
    from mlops.stages._batch_io import InputTable, TableWriter
    from mlops.stages._batch_model import BatchModel

__all__ = ["TransformRun", "predict_by_transform", "transform_capture_uri", "use_transform"]

logger = logging.getLogger(__name__)

_FEATURES_FILE = "features.csv"


@dataclass(frozen=True)
class TransformRun:
    """The transform job that scored a batch."""

    job_name: str
    job_arn: str | None
    capture_uri: str | None
    backend: str


def use_transform(settings: Settings, table: InputTable) -> bool:
    """Whether this input is scored by a transform job (``[batch] runner``).

    ``auto`` means a transform job when ``backend = "sagemaker"`` and the input (the file
    as read, an S3 object's downloaded copy) is at least ``transform_min_mb``.
    """
    runner = settings.batch.runner
    if runner != "auto":
        return runner == "transform"
    size_mb = table.path.stat().st_size / (1024 * 1024)
    return settings.backend == "sagemaker" and size_mb >= settings.batch.transform_min_mb


def transform_capture_uri(settings: Settings) -> str | None:
    """Where the job captures its records: the capture destination (SageMaker: S3 only)."""
    capture = settings.serving.capture
    if not capture.enabled:
        return None
    destination = settings.capture_destination
    if settings.backend == "sagemaker" and not destination.lower().startswith("s3://"):
        logger.warning(
            "batch capture is off for this transform job: SageMaker captures to S3 only and "
            "the capture destination is %s; set [serving.capture] destination = "
            '"s3://<bucket>/capture" so the monitor can read it',
            destination,
        )
        return None
    return destination


def _job_name(model_name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = re.sub(r"[^A-Za-z0-9-]", "-", model_name)[:28].strip("-") or "model"
    return f"{base}-batch-{stamp}-{uuid.uuid4().hex[:6]}"


def _read_predictions(path: Path, job_name: str) -> np.ndarray:
    import pandas as pd

    if not path.exists() or path.stat().st_size == 0:
        raise BackendError(
            f"transform job {job_name} left no answers at {path}; check the job's logs "
            "(CloudWatch /aws/sagemaker/TransformJobs) for records the model refused"
        )
    frame = pd.read_csv(path, header=None)
    return frame.iloc[:, 0].to_numpy()


def predict_by_transform(
    settings: Settings,
    model: BatchModel,
    table: InputTable,
    checked: Checked,
    writer: TableWriter,
    chunk_rows: int,
    compose: Callable[[pd.DataFrame, int, dict[str, Any]], pd.DataFrame],
    on_log: Callable[[str], None] | None = None,
) -> tuple[list[str], TransformRun]:
    """Score the checked input with one transform job; write the composed output.

    Args:
        compose: ``(raw chunk, row offset, {"prediction": values}) -> output frame``, the
            local path's own (inference ids, id columns, predictions).

    Raises:
        BackendError: the job failed (with the backend's reason) or answered a different
            number of records than the input holds.
    """
    from mlops.backends import TransformJobSpec, get_backend
    from mlops.stages._batch_model import model_features

    backend = get_backend(settings)
    job_name = _job_name(model.name)
    capture_uri = transform_capture_uri(settings)

    def chunks() -> Iterator[pd.DataFrame]:
        if checked.only_chunk is not None:
            yield checked.only_chunk
        else:
            yield from table.chunks(chunk_rows)

    with tempfile.TemporaryDirectory(prefix="mlops-transform-") as tmp:
        root = Path(tmp)
        (root / "input").mkdir()
        offset = 0
        with open(root / "input" / _FEATURES_FILE, "w", encoding="utf-8", newline="") as handle:
            for raw in chunks():
                features = model_features(raw, model, table.display, offset)
                features.to_csv(handle, header=False, index=False, lineterminator="\n")
                offset += len(raw)
        spec = TransformJobSpec(
            job_name=job_name,
            model=str(model.path),
            input_uri=str(root / "input"),
            output_uri=str(root / "output"),
            content_type="text/csv",
            split_type="Line",
            capture_uri=capture_uri,
            tags={"mlops:model": model.name, "mlops:version": model.version},
        )
        logger.info("scoring %d rows of %s with transform job %s", offset, model.label, job_name)
        result = backend.run_transform_job(spec, on_log=on_log)
        if result.status != "Completed":
            raise BackendError(
                f"transform job {job_name} of {model.label} {result.status.lower()}: "
                f"{result.failure_reason}; nothing was written (set [batch] runner = "
                '"local" to predict in this process)'
            )
        output = Path(result.output_uri.removeprefix("file://"))
        predictions = _read_predictions(output / f"{_FEATURES_FILE}.out", job_name)
    if len(predictions) != checked.rows:
        raise BackendError(
            f"transform job {job_name} answered {len(predictions)} records for "
            f"{checked.rows} input rows; nothing was written"
        )
    offset = 0
    columns: list[str] = []
    for raw in chunks():
        frame = compose(raw, offset, {"prediction": predictions[offset : offset + len(raw)]})
        writer.write(frame)
        columns = list(frame.columns)
        offset += len(raw)
    run = TransformRun(job_name, result.job_arn, capture_uri, backend.name)
    return columns, run
