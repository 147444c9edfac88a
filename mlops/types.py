"""Small shared vocabulary of the package."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Task"]


class Task(StrEnum):
    """The kind of supervised problem a model solves."""

    REGRESSION = "regression"
    BINARY = "binary"
    MULTICLASS = "multiclass"
