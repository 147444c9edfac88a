"""Data monitoring: the training-time baseline and constraint checks on new data."""

from __future__ import annotations

from mlops.monitoring.baseline import (
    Violation,
    build_constraints,
    build_statistics,
    check_constraints,
    reference_sample,
    violations_report,
)

__all__ = [
    "Violation",
    "build_constraints",
    "build_statistics",
    "check_constraints",
    "reference_sample",
    "violations_report",
]
