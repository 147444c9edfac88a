"""Batch inference: check a table against the model's training baseline, then predict it in chunks.

:func:`run_batch` resolves a registered version (``NAME``, ``NAME@ALIAS``, ``NAME/VERSION``
or ``models:/NAME/VERSION``; a bare name means ``@champion``), then reads the input twice,
chunk by chunk, so memory stays bounded whatever the input's size:

1. **check**, before anything is written: the schema (every feature the model takes, numbers
   in numeric columns: one :class:`~mlops.errors.DataError` naming the file, the columns and
   the fix), outliers (the share of rows with a value beyond the baseline's ``[min, max]``
   widened by ``batch.outlier_margin`` of the range, against ``batch.max_outlier_share``) and,
   with ``batch.check_drift``, drift of the features against the baseline's reference sample
   (:func:`mlops.monitoring.drift.detect_drift`, dataset decision at
   ``monitoring.drift_share``) on a seeded uniform sample of at most
   :data:`DRIFT_SAMPLE_ROWS` rows drawn while streaming. A failed check raises
   :class:`~mlops.errors.BatchCheckError`; no output exists, not even a partial one.
2. **predict**: each chunk's features in the model's declared order (whatever the input's
   column order; features the input lacks are derived from datetime columns the way training
   derived them, e.g. ``duration_minutes`` from pickup/dropoff), one model load, predictions
   streamed to a temporary file that is renamed into place (local) or uploaded (``s3://``)
   at the end. With ``[batch] runner = "transform"`` (or ``"auto"`` on
   ``backend = "sagemaker"`` for inputs of at least ``transform_min_mb``) the features are
   scored instead by one batch transform job of the compute backend, with
   ``BatchDataCaptureConfig`` to the capture destination (:mod:`._batch_transform`); the
   output is the same, without ``probability``.

The output holds, per input row and in input order:

* ``inference_id``: deterministic, ``<20 hex digits from the run id>-<row index in 12 hex
  digits>`` in UUID form (so ``int(id[-12:], 16)`` is the 0-based input row and the same row
  of the same run always has the same id; ids of two runs differ);
* pass-through columns: the input's id columns (``id`` or names ending in ``_id``/``ID``/
  ``Id`` that are not features) and the target column when present, so the output can be
  joined back and scored; every other input column is dropped (an input column whose name
  clashes with an output column is kept as ``input_<name>``);
* ``prediction``: what the model's own ``predict`` returns (values, or class indices as the
  endpoints answer), and ``probability`` of class 1 for a binary classifier.

Every run, passed or failed, is logged in experiment ``<model>/batch``
(``mlops.stage=batch-inference``) with the check results in ``batch/checks.json``.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from contextlib import ExitStack
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from mlops.stages._batch_checks import DRIFT_SAMPLE_ROWS, Checked, check_input, verdict
from mlops.stages._batch_io import InputTable, TableWriter, check_output, open_input, table_kind
from mlops.stages._batch_model import (
    BatchModel,
    load_batch_model,
    model_features,
    resolve_version,
)
from mlops.stages._batch_transform import TransformRun, predict_by_transform, use_transform
from mlops.stages._progress import stage_done, stage_started
from mlops.tracking import Tags, batch_experiment, connect, finish_run, start_run

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from mlops.settings import Settings

__all__ = [
    "DRIFT_SAMPLE_ROWS",
    "INFERENCE_ID_COLUMN",
    "PREDICTION_COLUMN",
    "STAGE",
    "BatchResult",
    "inference_ids",
    "resolve_version",
    "run_batch",
]

logger = logging.getLogger(__name__)

STAGE = "batch-inference"
INFERENCE_ID_COLUMN = "inference_id"
PREDICTION_COLUMN = "prediction"
PROBABILITY_COLUMN = "probability"
_OUTPUT_COLUMNS = (INFERENCE_ID_COLUMN, PREDICTION_COLUMN, PROBABILITY_COLUMN)
_ID_NAMESPACE = uuid.UUID("6f1c1f8e-5a43-4a39-9b3e-8f0f2f6b7d21")


class BatchResult(BaseModel):
    """What one batch-inference run did."""

    model_name: str
    version: str
    input: str
    output: str
    rows: int
    chunks: int
    outlier_rows: int = 0
    outlier_share: float = 0.0
    drift_checked: bool = False
    drift_share: float | None = None
    drifted: bool = False
    drifted_features: list[str] = Field(default_factory=list)
    drift_sample_rows: int = 0
    output_columns: list[str] = Field(default_factory=list)
    runner: str = Field("local", description='"local" or "transform" (a transform job)')
    transform_job: str | None = None
    transform_job_arn: str | None = None
    capture_uri: str | None = Field(None, description="where the transform job captured")
    run_id: str
    experiment: str
    duration_s: float


# ----------------------------------------------------------------------------- predict


class _Predictor:
    """The model loaded once: XGBoost's own estimator when it is one, else ``mlflow.pyfunc``."""

    def __init__(self, model: BatchModel) -> None:
        from mlops.serving.model import read_mlmodel

        mlmodel = read_mlmodel(model.path)
        self.features = model.features
        self.binary = model.task == "binary"
        self._booster = False
        if "xgboost" in mlmodel["flavors"]:
            import mlflow.xgboost

            self._model = mlflow.xgboost.load_model(str(model.path))
            self._booster = not hasattr(self._model, "get_booster")
            self._pyfunc = False
        else:
            import mlflow.pyfunc

            self._model = mlflow.pyfunc.load_model(str(model.path))
            self._pyfunc = True

    def __call__(self, features: pd.DataFrame) -> dict[str, np.ndarray]:
        if self._pyfunc:
            output = self._model.predict(features)
            values = np.asarray(getattr(output, "to_numpy", lambda: output)())
            return {PREDICTION_COLUMN: values.reshape(len(features), -1)[:, 0]}
        if self._booster:
            import xgboost as xgb

            matrix = xgb.DMatrix(features, missing=np.nan)
            return {PREDICTION_COLUMN: np.asarray(self._model.predict(matrix), dtype="float64")}
        predicted = np.asarray(self._model.predict(features))
        out = {
            PREDICTION_COLUMN: predicted.astype("float64")
            if predicted.dtype.kind == "f"
            else predicted
        }
        if self.binary and hasattr(self._model, "predict_proba"):
            out[PROBABILITY_COLUMN] = np.asarray(
                self._model.predict_proba(features)[:, 1], dtype="float64"
            )
        return out


def inference_ids(run_id: str, start: int, count: int) -> np.ndarray:
    """Inference ids of input rows ``start .. start+count-1`` of run ``run_id``.

    UUID-shaped: the first 20 hex digits come from the run id (uuid5), the last 12 are the
    0-based input row, so the same row of the same run always gets the same id.
    """
    head = uuid.uuid5(_ID_NAMESPACE, run_id).hex[:20]
    prefix = f"{head[:8]}-{head[8:12]}-{head[12:16]}-{head[16:20]}-"
    rows = np.arange(start, start + count, dtype=np.int64)
    return np.char.add(prefix, np.char.mod("%012x", rows)).astype(object)


def _passthrough(columns: list[Any], model: BatchModel) -> dict[Any, str]:
    """Input column → output name of the columns kept (id columns and the target)."""
    kept: dict[Any, str] = {}
    for column in columns:
        name = str(column)
        if name in model.features:
            continue
        is_id = name.lower() == "id" or name.lower().endswith("_id") or name.endswith(("ID", "Id"))
        if is_id or name == model.target:
            kept[column] = f"input_{name}" if name in _OUTPUT_COLUMNS else name
    return kept


def _predict(
    settings: Settings,
    model: BatchModel,
    table: InputTable,
    checked: Checked,
    writer: TableWriter,
    run_id: str,
    chunk_rows: int,
) -> list[str]:
    """Pass 2: predict chunk by chunk into ``writer``; return the output columns."""
    predictor = _Predictor(model)
    chunks = [checked.only_chunk] if checked.only_chunk is not None else table.chunks(chunk_rows)
    offset = 0
    columns: list[str] = []
    for index, raw in enumerate(chunks, start=1):
        features = model_features(raw, model, table.display, offset)
        frame = _compose(model, run_id, raw, offset, predictor(features))
        writer.write(frame)
        columns = list(frame.columns)
        offset += len(raw)
        _progress("predict", offset, checked.rows, f"predicted chunk {index} ({offset} rows)")
    return columns


def _compose(
    model: BatchModel, run_id: str, raw: pd.DataFrame, offset: int, predicted: dict[str, Any]
) -> pd.DataFrame:
    """The output rows of one input chunk: inference ids, id columns, predictions."""
    import pandas as pd

    keep = _passthrough(list(raw.columns), model)
    parts: dict[str, Any] = {INFERENCE_ID_COLUMN: inference_ids(run_id, offset, len(raw))}
    parts.update({out: raw[col].to_numpy() for col, out in keep.items()})
    parts.update(predicted)
    return pd.DataFrame(parts)


def _progress(phase: str, done: int, total: int | None, message: str) -> None:
    logger.info(
        "%s",
        message,
        extra={
            "mlops_stage": STAGE,
            "mlops_event": "progress",
            "mlops_phase": phase,
            "mlops_rows": done,
            "mlops_total": total,
        },
    )


# ------------------------------------------------------------------------------- stage


def run_batch(
    settings: Settings,
    model: str,
    input_uri: str,
    output_uri: str,
    *,
    tags: dict[str, str] | None = None,
) -> BatchResult:
    """Check ``input_uri`` against the model's baseline, then write its predictions.

    Args:
        settings: effective settings (``batch.*``, ``monitoring.drift_share``, ``aws``).
        model: ``NAME``, ``NAME@ALIAS``, ``NAME/VERSION`` or ``models:/NAME/VERSION``; a bare
            name means ``NAME@champion``.
        input_uri: local path, ``file://`` or ``s3://`` of a ``.parquet``/``.pq``/``.csv``/
            ``.csv.gz`` table.
        output_uri: where the predictions go; the suffix picks Parquet or CSV. An existing
            file is replaced, atomically, only when the whole run succeeded.
        tags: extra tags of the MLflow run (e.g. the Prefect flow-run id).

    Raises:
        BatchCheckError: drift or outliers beyond the thresholds; nothing was written.
        DataError: the input is missing, unreadable, lacks features or has text in a numeric
            column; nothing was written.
        ModelNotFoundError: unknown model, alias or version (the message lists what exists).
        ConfigError: a bad model reference or output name.
    """
    started = time.monotonic()
    table_kind(input_uri, "input")
    check_output(settings, output_uri)
    client = connect(settings)
    spec = load_batch_model(settings, client, model)
    chunk_rows = settings.batch.chunk_rows
    experiment = batch_experiment(spec.name)
    stage_started(STAGE, f"{spec.label}: {input_uri} -> {output_uri}")
    run_id = start_run(
        client,
        settings,
        experiment=experiment,
        run_name=f"batch-v{spec.version}",
        tags={
            Tags.STAGE: STAGE,
            Tags.MODEL_NAME: spec.name,
            Tags.MODEL_VERSION: spec.version,
            Tags.BATCH_INPUT: input_uri,
            Tags.BATCH_OUTPUT: output_uri,
            **(tags or {}),
        },
    )
    _log_params(client, run_id, settings, spec, model, input_uri, output_uri)
    outcome, checked, columns, error = "error", None, [], ""
    transform: TransformRun | None = None
    try:
        with ExitStack() as stack:
            table = open_input(settings, input_uri, stack)
            checked = check_input(settings, spec, table, chunk_rows, partial(_progress, "check"))
            failure = verdict(settings, spec, table, checked, run_id)
            if failure is not None:
                outcome = "failed"
                raise failure
            writer = TableWriter(settings, output_uri)
            try:
                if use_transform(settings, table):
                    columns, transform = predict_by_transform(
                        settings, spec, table, checked, writer, chunk_rows,
                        partial(_compose, spec, run_id),
                        on_log=lambda line: logger.info("transform job: %s", line),
                    )  # fmt: skip
                    _log_transform(client, run_id, transform)
                else:
                    columns = _predict(settings, spec, table, checked, writer, run_id, chunk_rows)
                writer.commit()
            except BaseException:
                writer.discard()
                raise
        outcome = "succeeded"
    except BaseException as exc:
        error = str(exc) or type(exc).__name__
        raise
    finally:
        try:
            _log_outcome(
                client, run_id, settings, outcome, checked, error, time.monotonic() - started
            )
        except Exception as exc:  # the tracking store failed: keep the batch's own error
            if outcome == "succeeded":
                raise
            logger.warning("could not record the outcome of batch run %s: %s", run_id, exc)
    assert checked is not None
    drift = checked.drift
    result = BatchResult(
        model_name=spec.name,
        version=spec.version,
        input=input_uri,
        output=output_uri,
        rows=checked.rows,
        chunks=checked.chunks,
        outlier_rows=checked.outliers.outlier_rows if checked.outliers else 0,
        outlier_share=checked.outliers.share if checked.outliers else 0.0,
        drift_checked=drift is not None,
        drift_share=drift.share if drift is not None else None,
        drifted=bool(drift.drifted) if drift is not None else False,
        drifted_features=drift.drifted_columns if drift is not None else [],
        drift_sample_rows=checked.drift_sample_rows,
        output_columns=columns,
        runner="transform" if transform is not None else "local",
        transform_job=transform.job_name if transform is not None else None,
        transform_job_arn=transform.job_arn if transform is not None else None,
        capture_uri=transform.capture_uri if transform is not None else None,
        run_id=run_id,
        experiment=experiment,
        duration_s=time.monotonic() - started,
    )
    stage_done(STAGE, f"{result.rows} predictions of {spec.label} -> {output_uri}")
    return result


def _log_params(
    client: MlflowClient,
    run_id: str,
    settings: Settings,
    spec: BatchModel,
    ref: str,
    input_uri: str,
    output_uri: str,
) -> None:
    from mlflow.entities import Param

    params = {
        "model": ref,
        "model_version": spec.version,
        "input": input_uri,
        "output": output_uri,
        "chunk_rows": settings.batch.chunk_rows,
        "batch_runner": settings.batch.runner,
        "check_drift": settings.batch.check_drift,
        "max_outlier_share": settings.batch.max_outlier_share,
        "outlier_margin": settings.batch.outlier_margin,
        "drift_share_threshold": settings.monitoring.drift_share,
    }
    client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])


def _log_transform(client: MlflowClient, run_id: str, transform: TransformRun) -> None:
    from mlflow.entities import Param

    params = {
        "runner": "transform",
        "transform_job": transform.job_name,
        "transform_backend": transform.backend,
        **({"transform_job_arn": transform.job_arn} if transform.job_arn else {}),
        **({"transform_capture": transform.capture_uri} if transform.capture_uri else {}),
    }
    client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in params.items()])


def _log_outcome(
    client: MlflowClient,
    run_id: str,
    settings: Settings,
    outcome: str,
    checked: Checked | None,
    error: str,
    duration_s: float,
) -> None:
    """Metrics, outcome tags and ``batch/checks.json``; then close the run."""
    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    metrics: dict[str, float] = {"duration_s": duration_s}
    tags = {Tags.BATCH_OUTCOME: outcome}
    document: dict[str, Any] = {"outcome": outcome, "error": error or None}
    if checked is not None:
        document.update(checked.to_dict(settings))
        metrics.update(rows=checked.rows, chunks=checked.chunks)
        if checked.outliers is not None:
            metrics.update(
                outlier_rows=checked.outliers.outlier_rows, outlier_share=checked.outliers.share
            )
        drift = checked.drift
        if drift is not None:
            metrics["drift_share"] = drift.share
            metrics.update(
                {f"drift_score_{k}": v for k, v in drift.scores.items() if math.isfinite(v)}
            )
            tags[Tags.DRIFT_DETECTED] = str(bool(drift.drifted)).lower()
            tags[Tags.DRIFTED_FEATURES] = ",".join(drift.drifted_columns)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    client.log_dict(run_id, document, "batch/checks.json")
    finish_run(client, run_id, failed=outcome != "succeeded")
