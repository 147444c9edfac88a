"""The checks of a batch input against the training baseline, made before anything is written.

One pass over the input's chunks checks the schema of each (:func:`model_features`), counts
outlier rows (:mod:`mlops.monitoring.outliers`) and draws a seeded uniform sample of at most
:data:`DRIFT_SAMPLE_ROWS` rows, on which drift against the baseline's reference sample is
decided (:func:`mlops.monitoring.drift.detect_drift`). :func:`verdict` turns the results into
the :class:`~mlops.errors.BatchCheckError` of a failed batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops.errors import BatchCheckError, DataError
from mlops.stages._batch_model import BatchModel, model_features, numeric_features
from mlops.tracking import batch_experiment

if TYPE_CHECKING:
    import pandas as pd

    from mlops.monitoring.drift import DriftResult
    from mlops.monitoring.outliers import OutlierCounter
    from mlops.monitoring.reference import Baseline
    from mlops.settings import Settings
    from mlops.stages._batch_io import InputTable

__all__ = ["DRIFT_SAMPLE_ROWS", "Checked", "UniformSample", "check_input", "verdict"]

logger = logging.getLogger(__name__)

#: The drift check uses a seeded uniform sample of at most this many input rows.
DRIFT_SAMPLE_ROWS = 1_000_000


class UniformSample:
    """A seeded uniform sample without replacement of at most ``size`` rows, over chunks.

    Each row draws a random key; the ``size`` smallest keys are kept (bottom-k sampling), so
    the sample is uniform over every row seen without holding more than ``size`` + one chunk.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self._rng = np.random.default_rng([seed, 4099])
        self._keys = np.empty(0)
        self._frames: list[pd.DataFrame] = []
        self.seen = 0

    def add(self, frame: pd.DataFrame) -> None:
        import pandas as pd

        keys = self._rng.random(len(frame))
        self.seen += len(frame)
        if len(self._keys) >= self.size:
            pick = keys < self._keys.max()
            if not pick.any():
                return
            frame, keys = frame[pick], keys[pick]
        kept = pd.concat([*self._frames, frame], ignore_index=True)
        kept_keys = np.concatenate([self._keys, keys])
        if len(kept_keys) > self.size:
            index = np.sort(np.argpartition(kept_keys, self.size - 1)[: self.size])
            kept, kept_keys = kept.iloc[index].reset_index(drop=True), kept_keys[index]
        self._frames, self._keys = [kept], kept_keys

    @property
    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return self._frames[0] if self._frames else pd.DataFrame()


@dataclass
class Checked:
    rows: int
    chunks: int
    outliers: OutlierCounter | None
    drift: DriftResult | None
    drift_note: str
    drift_sample_rows: int
    only_chunk: pd.DataFrame | None  # the raw input when it was a single chunk

    def to_dict(self, settings: Settings) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "chunks": self.chunks,
            "outliers": (
                {**self.outliers.to_dict(), "max_outlier_share": settings.batch.max_outlier_share}
                if self.outliers is not None
                else None
            ),
            "drift": self.drift.to_dict() if self.drift is not None else None,
            "drift_note": self.drift_note,
            "drift_sample_rows": self.drift_sample_rows,
        }


def check_input(
    settings: Settings,
    model: BatchModel,
    table: InputTable,
    chunk_rows: int,
    on_chunk: Callable[[int, int | None, str], None],
) -> Checked:
    """Pass 1: schema of every chunk, outliers and the drift sample; decide drift."""
    from mlops.monitoring.outliers import OutlierCounter, outlier_bounds

    baseline = model.baseline
    counter = None
    if baseline is not None:
        bounds = outlier_bounds(
            baseline.statistics, numeric_features(model), settings.batch.outlier_margin
        )
        counter = OutlierCounter(bounds)
    sample = None
    if baseline is not None and settings.batch.check_drift:
        sample = UniformSample(DRIFT_SAMPLE_ROWS, settings.seed)
    rows = chunks = 0
    only: pd.DataFrame | None = None
    for raw in table.chunks(chunk_rows):
        features = model_features(raw, model, table.display, rows)
        if counter is not None:
            counter.add(features)
        if sample is not None:
            sample.add(features)
        only = raw if chunks == 0 else None
        rows += len(raw)
        chunks += 1
        on_chunk(rows, table.num_rows, f"checked chunk {chunks} ({rows} rows)")
    if rows == 0:
        raise DataError(f"batch input {table.display} has columns but no rows; give it data rows")
    drift, note, sampled = None, "", 0
    if baseline is None:
        note = "no baseline: drift not checked"
    elif not settings.batch.check_drift:
        note = "batch.check_drift is off"
    elif rows < settings.monitoring.min_rows:
        note = f"{rows} rows, fewer than monitoring.min_rows={settings.monitoring.min_rows}"
    else:
        assert sample is not None
        sampled = len(sample.frame)
        if sampled < rows:
            logger.info(
                "drift of %s is checked on a seeded uniform sample of %d of its %d rows",
                table.display,
                sampled,
                rows,
            )
        drift = _drift(settings, baseline, model.features, sample.frame)
    return Checked(rows, chunks, counter, drift, note, sampled, only)


def _drift(
    settings: Settings, baseline: Baseline, features: list[str], current: pd.DataFrame
) -> DriftResult:
    import pandas as pd

    from mlops.monitoring.drift import detect_drift
    from mlops.monitoring.reference import column_types

    reference = baseline.reference[features]
    current = current[features].copy()
    for name in features:  # integer codes read back as floats compare as the same values
        ref, cur = reference[name], current[name]
        if pd.api.types.is_integer_dtype(ref.dtype) and pd.api.types.is_float_dtype(cur.dtype):
            values = cur.to_numpy()
            if np.isfinite(values).all() and (values % 1 == 0).all():
                current[name] = cur.astype(ref.dtype)
    numerical, categorical = column_types(reference, features)
    return detect_drift(
        reference,
        current,
        numerical=numerical,
        categorical=categorical,
        drift_share=settings.monitoring.drift_share,
        on_empty="skip",
    )


def verdict(
    settings: Settings, model: BatchModel, table: InputTable, checked: Checked, run_id: str
) -> BatchCheckError | None:
    """The BatchCheckError for failed checks, or None when the batch may be predicted."""
    reasons: list[str] = []
    parts: list[str] = []
    details: dict[str, Any] = {
        "model_name": model.name,
        "version": model.version,
        "input": table.display,
        "run_id": run_id,
        "rows": checked.rows,
    }
    drift = checked.drift
    if drift is not None:
        details.update(
            drift_share=drift.share,
            drift_threshold=drift.drift_share,
            drifted_features=drift.drifted_columns,
            drift_scores={k: _finite(v) for k, v in drift.scores.items()},
        )
        if drift.drifted:
            reasons.append("drift")
            listed = ", ".join(
                f"{c.column} ({c.method} {c.score:.3g} vs threshold {c.threshold:g})"
                for c in drift.columns.values()
                if c.drifted
            )
            parts.append(
                f"drift: {drift.count} of {len(drift.columns)} features drifted from the "
                f"training reference ({listed}); share {drift.share:.2f} >= "
                f"monitoring.drift_share {drift.drift_share:g}"
            )
    outliers = checked.outliers
    if outliers is not None:
        limit = settings.batch.max_outlier_share
        details.update(
            outlier_share=outliers.share,
            outlier_rows=outliers.outlier_rows,
            max_outlier_share=limit,
            outlier_columns=dict(outliers.by_column),
        )
        if outliers.share > limit:
            reasons.append("outliers")
            columns = ", ".join(f"{k}: {v}" for k, v in sorted(outliers.by_column.items()))
            parts.append(
                f"outliers: {outliers.outlier_rows} of {outliers.rows} rows "
                f"({outliers.share:.2%}) hold values beyond the training range widened on "
                f"each side by batch.outlier_margin={settings.batch.outlier_margin:g} of its "
                f"width ({columns}); more than batch.max_outlier_share={limit:.2%}"
            )
    if not reasons:
        return None
    reason = "+".join(reasons)
    return BatchCheckError(
        f"batch input {table.display} failed its checks against {model.label}'s training "
        f"baseline: {'; '.join(parts)}. No predictions were written; the checks are in MLflow "
        f"run {run_id} (experiment {batch_experiment(model.name)!r}). Fix the input, or retrain "
        "the model on recent data if this is the new normal",
        reason=reason,
        details=details,
    )


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
