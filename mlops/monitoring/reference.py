"""A registered version's training baseline, loaded back for monitoring and batch checks.

The baseline stage logs ``baseline/{schema,statistics,constraints}.json`` and
``reference.parquet`` in the training run; the version's ``mlops.baseline_uri`` tag points
there. :func:`load_baseline` reads them once into one object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Baseline", "column_types", "load_baseline"]

_INTEGER_CARDINALITY_LIMIT = 10  # Evidently's infer_column_type: small-cardinality ints


@dataclass
class Baseline:
    """Everything the baseline stage logged for one model version.

    Attributes:
        uri: the artifact folder (``.../baseline``).
        features: the model's features in its input order.
        target: the training target column.
        task: ``regression``, ``binary`` or ``multiclass``.
        classes: class labels of a classifier (empty for regression).
        prediction_column: name of the prediction column in ``reference``.
        statistics: Model Monitor-style ``statistics.json``.
        constraints: Model Monitor-style ``constraints.json``.
        reference: the reference sample: features, target and the model's prediction.
    """

    uri: str
    features: list[str]
    target: str
    task: str
    classes: list[Any]
    prediction_column: str
    statistics: dict[str, Any]
    constraints: dict[str, Any]
    reference: pd.DataFrame = field(repr=False)

    def feature_range(self, name: str) -> tuple[float, float] | None:
        """The observed (min, max) of a numeric feature in the training data, if known."""
        for feature in self.statistics.get("features", []):
            if feature.get("name") == name and feature.get("numerical_statistics"):
                block = feature["numerical_statistics"]
                if block.get("min") is not None and block.get("max") is not None:
                    return float(block["min"]), float(block["max"])
        return None


def load_baseline(uri: str) -> Baseline:
    """Download and read the baseline folder at ``uri`` (any MLflow artifact URI).

    Raises:
        DataError: the folder or one of its files is missing or unreadable; the message
            names the URI and says how to make a baseline.
    """
    import mlflow
    import pandas as pd

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as exc:  # MlflowException, OSError: the URI names no readable folder
        raise DataError(
            f"cannot read the baseline at {uri} ({exc}); the version's training run must hold "
            "baseline/ (re-run `mlops train`, which writes it)"
        ) from exc
    try:
        schema = json.loads((local / "schema.json").read_text())
        statistics = json.loads((local / "statistics.json").read_text())
        constraints = json.loads((local / "constraints.json").read_text())
        reference = pd.read_parquet(local / "reference.parquet")
    except (OSError, ValueError) as exc:
        raise DataError(
            f"the baseline at {uri} is incomplete ({exc}); it needs schema.json, "
            "statistics.json, constraints.json and reference.parquet (re-run `mlops train`)"
        ) from exc
    return Baseline(
        uri=uri,
        features=[str(f) for f in schema["features"]],
        target=str(schema["target"]),
        task=str(schema["task"]),
        classes=list(schema.get("classes") or []),
        prediction_column=str(schema.get("prediction_column", "prediction")),
        statistics=statistics,
        constraints=constraints,
        reference=reference,
    )


def column_types(reference: pd.DataFrame, columns: list[str]) -> tuple[list[str], list[str]]:
    """Split ``columns`` into (numerical, categorical) by the reference's dtypes.

    Evidently's rule when no data definition is given: floats are numerical, integers with at
    most 10 distinct values categorical (more: numerical), strings, booleans and categories
    categorical. Deciding on the reference alone keeps the choice stable across windows
    (a CSV window may parse ``1`` where training had ``1.0``).
    """
    import pandas as pd

    numerical: list[str] = []
    categorical: list[str] = []
    for name in columns:
        series = reference[name]
        if pd.api.types.is_bool_dtype(series):
            categorical.append(name)
        elif pd.api.types.is_integer_dtype(series):
            limited = series.nunique() <= _INTEGER_CARDINALITY_LIMIT
            (categorical if limited else numerical).append(name)
        elif pd.api.types.is_numeric_dtype(series):
            numerical.append(name)
        else:
            categorical.append(name)
    return numerical, categorical
