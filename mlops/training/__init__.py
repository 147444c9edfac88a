"""The training program (runs inside a training job) and its contract."""

from __future__ import annotations

__all__ = ["MODEL_FILE", "METADATA_FILE", "CURVES_FILE"]

MODEL_FILE = "xgboost-model.ubj"
"""The model in XGBoost's native UBJSON format, inside the job's model folder."""
METADATA_FILE = "training-metadata.json"
"""Task, target, features, classes and best iteration, inside the job's model folder."""
CURVES_FILE = "evals_result.json"
"""Per-iteration train/validation metrics, inside the job's ``output/data`` folder."""
