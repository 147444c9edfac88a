"""Rows to send to an endpoint: a version's reference sample as CSV in its feature order."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from mlops.errors import RolloutError
from mlops.registry import get_version
from mlops.tracking import Tags, connect

if TYPE_CHECKING:
    import pandas as pd

    from mlops.settings import Settings

__all__ = ["reference_rows"]


def _model_features(model_name: str, version: str) -> list[str]:
    """The version's feature order, from its MLmodel file.

    Read from the version's files by the download URI the registry gives (the shared
    artifact store), not through ``get_model_info``, which looks the logged model up in this
    environment's tracking store: prod's does not hold dev's models.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import Model

    # the process-wide URIs, which connect() set to this environment's stores
    files = MlflowClient().get_model_version_download_uri(model_name, version)
    info = Model.load(
        mlflow.artifacts.download_artifacts(artifact_uri=f"{files.rstrip('/')}/MLmodel")
    )
    features = ((info.metadata or {}).get("mlops") or {}).get("features")
    if features:
        return list(features)
    if info.signature is not None and info.signature.inputs is not None:
        return list(info.signature.inputs.input_names())
    raise RolloutError(
        f"{model_name} v{version} records neither mlops features nor a signature; log the "
        "model with a signature so rows can be sent to it"
    )


def reference_rows(
    settings: Settings, model_name: str, version: str, rows: int
) -> tuple[bytes, int]:
    """CSV rows (no header, the model's feature order) from the version's reference sample.

    This is what the pre-traffic hook sends to green and the synthetic canary to prod.
    """
    import mlflow
    import pandas as pd

    client = connect(settings)
    mv = get_version(client, model_name, version)
    baseline = mv.tags.get(Tags.BASELINE_URI)
    features = _model_features(model_name, str(mv.version))
    if baseline:
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"{baseline}/reference.parquet")
        frame = pd.read_parquet(path)
    else:  # a model registered by hand: its logged input example is the sample
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{model_name}/{mv.version}"
        )
        from mlflow.models import Model

        example = Model.load(path).load_input_example(path)
        if example is None:
            raise RolloutError(
                f"{model_name} v{mv.version} has no baseline ({Tags.BASELINE_URI}) and no "
                "input example; train it with mlops or log an input example"
            )
        frame = pd.DataFrame(example)
    sample = frame[features].head(rows)
    return _to_csv(sample), len(sample)


def _to_csv(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, header=False, index=False, lineterminator="\n")
    return buffer.getvalue().encode()
