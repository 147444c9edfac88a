"""Data: built-in datasets, reading tables, validation and feature engineering.

Heavy optional libraries (scikit-learn, boto3) load only when a function needs them.
"""

from __future__ import annotations

from mlops.data.builtin import (
    BUILTIN_DATASETS,
    BUILTIN_TASKS,
    BuiltinDataset,
    engineer_features,
    load_builtin,
    make_batch,
)
from mlops.data.io import SUPPORTED_SUFFIXES, frame_digest, read_table, write_parquet
from mlops.data.validation import (
    MAX_CLASSES,
    MIN_ROWS,
    coerce_features,
    encode_target,
    infer_task,
    validate_table,
)

__all__ = [
    "BUILTIN_DATASETS",
    "BUILTIN_TASKS",
    "MAX_CLASSES",
    "MIN_ROWS",
    "SUPPORTED_SUFFIXES",
    "BuiltinDataset",
    "coerce_features",
    "encode_target",
    "engineer_features",
    "frame_digest",
    "infer_task",
    "load_builtin",
    "make_batch",
    "read_table",
    "validate_table",
    "write_parquet",
]
