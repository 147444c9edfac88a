"""The registered version a batch is predicted with, and its input schema check.

:func:`resolve_version` turns ``NAME``, ``NAME@ALIAS``, ``NAME/3`` or ``models:/NAME/3`` into a
registry version (errors list what exists); :func:`load_batch_model` downloads the model once
and reads its declared features and baseline; :func:`model_features` turns one input chunk
into the model's features, in its order, or raises one :class:`~mlops.errors.DataError` that
names the file, the columns and the fix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops.errors import ConfigError, DataError, ModelNotFoundError, ServingError
from mlops.tracking import Tags

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from mlops.monitoring.reference import Baseline
    from mlops.settings import Settings

__all__ = [
    "BatchModel",
    "load_batch_model",
    "model_features",
    "numeric_features",
    "resolve_version",
]

logger = logging.getLogger(__name__)


@dataclass
class BatchModel:
    """The resolved version and what the checks and predictions need from it."""

    name: str
    version: str
    path: Path
    features: list[str]
    target: str | None
    task: str | None
    baseline: Baseline | None

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


def resolve_version(client: MlflowClient, ref: str) -> ModelVersion:
    """The registered version behind ``ref`` (``NAME``, ``NAME@ALIAS``, ``NAME/3``,
    ``NAME/latest``, ``models:/NAME/3``, ``models:/NAME@ALIAS``; a bare name is ``@champion``).

    Raises:
        ConfigError: ``ref`` is not a model reference.
        ModelNotFoundError: unknown model, alias or version; the message lists what exists.
    """
    from mlflow.exceptions import MlflowException

    from mlops.registry.models import get_version
    from mlops.serving.model import parse_model_ref

    try:
        name, version, alias = parse_model_ref(ref)
    except ServingError as exc:
        raise ConfigError(str(exc)) from None
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        known = sorted(m.name for m in client.search_registered_models())
        raise ModelNotFoundError(
            f"registered model {name!r} does not exist (registered: {', '.join(known) or 'none'})"
            f"; pass one of them to --model, or train it with `mlops train --model-name {name}`"
        ) from None
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    if alias is not None:
        aliases = dict(model.aliases or {})
        if alias not in aliases:
            listed = ", ".join(f"{a} (v{v})" for a, v in sorted(aliases.items())) or "none"
            raise ModelNotFoundError(
                f"model {name!r} has no alias {alias!r} (aliases: {listed}; versions: "
                f"{', '.join(map(str, versions)) or 'none'}); pass --model {name}@ALIAS or "
                f"{name}/VERSION"
            )
        version = str(aliases[alias])
    elif version == "latest":
        if not versions:
            raise ModelNotFoundError(f"model {name!r} has no versions; train it first")
        version = str(versions[-1])
    return get_version(client, name, str(version))


def load_batch_model(settings: Settings, client: MlflowClient, ref: str) -> BatchModel:
    from mlops.monitoring.reference import load_baseline
    from mlops.registry import require_release
    from mlops.serving.model import read_mlmodel, resolve_model

    mv = resolve_version(client, ref)
    name, version = mv.name, str(mv.version)
    require_release(settings, client, name, version)  # prod: approved and promoted there
    resolved = resolve_model(settings, f"{name}/{version}")  # downloaded once, then cached
    mlmodel = read_mlmodel(resolved.path)
    meta = (mlmodel.get("metadata") or {}).get("mlops") or {}
    features = [str(f) for f in meta.get("features") or []] or _signature_names(mlmodel)
    if not features:
        raise ServingError(
            f"{name} v{version} declares no input columns (no mlops metadata, no signature); "
            "log the model with a signature so batch inputs can be matched to it"
        )
    baseline_uri = mv.tags.get(Tags.BASELINE_URI)
    baseline = load_baseline(baseline_uri) if baseline_uri else None
    if baseline is None:
        logger.warning(
            "%s v%s has no baseline (%s tag): outlier and drift checks are skipped",
            name,
            version,
            Tags.BASELINE_URI,
        )
    target = meta.get("target") or (baseline.target if baseline else None)
    task = meta.get("task") or (baseline.task if baseline else None)
    return BatchModel(name, version, resolved.path, features, target, task, baseline)


def _signature_names(mlmodel: dict[str, Any]) -> list[str]:
    import json

    raw = (mlmodel.get("signature") or {}).get("inputs")
    try:
        columns = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [str(c["name"]) for c in columns if isinstance(c, dict) and "name" in c]


# ------------------------------------------------------------------------------ schema


def numeric_features(model: BatchModel) -> list[str]:
    """Features that must hold numbers: all of them, unless the baseline saw text in one."""
    if model.baseline is None:
        return list(model.features)
    text = {
        f["name"]
        for f in model.baseline.statistics.get("features", [])
        if f.get("inferred_type") == "String"
    }
    return [f for f in model.features if f not in text]


def model_features(raw: pd.DataFrame, model: BatchModel, display: str, offset: int) -> pd.DataFrame:
    """The chunk's model features, in the model's order, numeric columns as numbers.

    Raises:
        DataError: features missing, or text in a numeric feature (all such columns at once).
    """
    import pandas as pd

    from mlops.data import engineer_features

    frame = raw
    if any(f not in raw.columns for f in model.features):
        frame, _ = engineer_features(raw, model.target or "")
    missing = [f for f in model.features if f not in frame.columns]
    if missing:
        present = ", ".join(map(str, raw.columns[:30])) + (", ..." if raw.shape[1] > 30 else "")
        raise DataError(
            f"batch input {display} lacks the column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} that {model.label} takes (it takes "
            f"{', '.join(model.features)}; the input has {present}); add "
            f"{'them' if len(missing) > 1 else 'it'} to the input (columns derived at training, "
            "such as duration_minutes, may instead come as the raw datetime columns they were "
            "derived from)"
        )
    out = frame[model.features].copy()
    problems: list[str] = []
    for name in numeric_features(model):
        series = out[name]
        if pd.api.types.is_bool_dtype(series.dtype):
            out[name] = series.astype("float64")
        elif pd.api.types.is_numeric_dtype(series.dtype):
            continue
        elif pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(
            series.dtype
        ):
            parsed = pd.to_numeric(series.astype(object), errors="coerce").astype("float64")
            bad = series.notna().to_numpy() & parsed.isna().to_numpy()
            if bad.any():
                where = np.flatnonzero(bad)
                shown = ", ".join(
                    f"{_short(series.iloc[i])} at row {offset + int(i) + 1}" for i in where[:3]
                )
                more = f" and {len(where) - 3} more" if len(where) > 3 else ""
                problems.append(f"{name} ({shown}{more})")
            out[name] = parsed
        else:
            problems.append(f"{name} (dtype {series.dtype})")
    if problems:
        raise DataError(
            f"batch input {display} has text in numeric column"
            f"{'s' if len(problems) > 1 else ''} {'; '.join(problems)}; {model.label} needs "
            "numbers there: correct those values or leave them empty (read as missing), "
            "then run the batch again (nothing was written)"
        )
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
