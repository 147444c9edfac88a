"""mlops: the whole life of a tabular ML model, as Prefect flows logged to MLflow.

Importing the package does no work: heavy libraries load only where they are used.
"""

from __future__ import annotations

from mlops.errors import MlopsError
from mlops.types import Task

__all__ = ["MlopsError", "Task", "__version__"]
__version__ = "0.1.0"
