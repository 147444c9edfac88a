"""Retraining: the cooldown, the training data of a retraining, and the data watch.

The ``retraining`` flow (triggered by ``mlops.drift.detected`` and ``mlops.data.updated``)
and the ``data-watch`` flow are thin wrappers over these functions. State lives on the
registered model's tags, so a restarted server or worker keeps it:

* ``mlops.retraining.last_started_at`` / ``last_reason``: when the last retraining started;
  events inside ``retraining.cooldown`` after it are skipped (one incident retrains once).
* ``mlops.data_watch.digest``: the digest of the training source the data watch saw last.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from mlops.data import (
    BUILTIN_DATASETS,
    engineer_features,
    frame_digest,
    load_builtin,
    read_table,
    write_parquet,
)
from mlops.errors import ConfigError, ModelNotFoundError
from mlops.tracking import Tags, connect, model_resource_id
from mlops.types import parse_duration

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from mlops.settings import Settings

__all__ = [
    "DataWatchResult",
    "RetrainingResult",
    "TrainingSource",
    "check_data_source",
    "configured_source",
    "cooldown_check",
    "mark_retraining_started",
    "model_name_of",
    "record_data_digest",
    "retraining_data",
]

logger = logging.getLogger(__name__)


class TrainingSource(BaseModel):
    """What a retraining trains on, in the training pipeline's own terms."""

    dataset: str | None = Field(None, description="built-in dataset")
    data: str | None = Field(None, description="table path or s3:// URI")
    target: str | None = None
    task: str | None = None
    rows: int | None = Field(None, description="rows of a built-in dataset")
    source: str = Field(description="the configured source, as the data watch names it")
    labelled_rows: int = Field(0, description="captured requests with ground truth added")
    notes: list[str] = Field(default_factory=list)

    def pipeline_arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``training_pipeline`` / ``run_training_pipeline``."""
        return {
            "dataset": self.dataset,
            "data": self.data,
            "target": self.target,
            "task": self.task,
            "rows": self.rows,
        }


class RetrainingResult(BaseModel):
    """What one retraining did (or why it did nothing)."""

    model_name: str
    reason: str
    event_id: str | None = None
    skipped: bool = False
    message: str
    source: TrainingSource | None = None
    version: str | None = None
    created: bool = False
    deployed: bool = Field(False, description="approved and rolled out to prod")


class DataWatchResult(BaseModel):
    """What the data watch saw for one model's training source."""

    model_name: str
    source: str
    old_digest: str | None
    new_digest: str
    changed: bool = Field(description="the digest differs from the one recorded before")
    first_look: bool = Field(description="no digest was recorded before (nothing to compare)")

    def event_payload(self) -> dict[str, Any]:
        """Payload of ``mlops.data.updated``."""
        return {
            "source": self.source,
            "old_digest": self.old_digest,
            "new_digest": self.new_digest,
            "reason": "data",
        }


def model_name_of(name_or_resource_id: str) -> str:
    """A model name from either itself or its event resource id ``mlops.model.<name>``."""
    prefix = model_resource_id("")
    return name_or_resource_id.removeprefix(prefix) or name_or_resource_id


def _model_tags(client: MlflowClient, model_name: str) -> dict[str, str] | None:
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_registered_model(model_name).tags or {})
    except MlflowException:
        return None


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def cooldown_check(
    settings: Settings, model_name: str, now: datetime | None = None
) -> tuple[bool, str]:
    """May ``model_name`` be retrained now, given ``retraining.cooldown``?

    Reads ``mlops.retraining.last_started_at`` on the registered model.

    Returns:
        ``(allowed, why)``; when not allowed, ``why`` says "cooldown until <time>".
    """
    now = _now(now)
    cooldown = parse_duration(settings.retraining.cooldown, "retraining.cooldown")
    tags = _model_tags(connect(settings), model_name)
    if tags is None:
        return True, f"{model_name} is not registered yet: no retraining to cool down from"
    last = tags.get(Tags.LAST_RETRAINING_AT)
    if not last:
        return True, f"no retraining of {model_name} recorded before"
    try:
        started = _now(datetime.fromisoformat(last))
    except ValueError:
        return True, f"tag {Tags.LAST_RETRAINING_AT}={last!r} is not a time; ignoring it"
    until = started + cooldown
    previous = tags.get(Tags.LAST_RETRAINING_REASON, "unknown reason")
    if now < until:
        return False, (
            f"cooldown until {until.isoformat(timespec='seconds')}: the last retraining of "
            f"{model_name} started at {started.isoformat(timespec='seconds')} ({previous}); "
            f"retraining.cooldown is {settings.retraining.cooldown}"
        )
    return True, (
        f"the last retraining of {model_name} started at "
        f"{started.isoformat(timespec='seconds')}, more than {settings.retraining.cooldown} ago"
    )


def mark_retraining_started(
    settings: Settings, model_name: str, reason: str, at: datetime | None = None
) -> None:
    """Record on the registered model that a retraining starts now (creating the model's
    registry entry when it has none yet), so the cooldown holds across restarts."""
    client = connect(settings)
    if _model_tags(client, model_name) is None:
        client.create_registered_model(model_name)
    at = _now(at)
    client.set_registered_model_tag(
        model_name, Tags.LAST_RETRAINING_AT, at.isoformat(timespec="seconds")
    )
    client.set_registered_model_tag(model_name, Tags.LAST_RETRAINING_REASON, reason[:1000])


def configured_source(settings: Settings, model_name: str) -> TrainingSource:
    """The training source of ``settings.retraining``: ``data`` + ``target`` when given,
    else the built-in ``dataset`` (a model named after a built-in dataset trains on it unless
    ``retraining.dataset`` is set explicitly)."""
    conf = settings.retraining
    if conf.data:
        if not conf.target:
            raise ConfigError(
                f"retraining.data is {conf.data} but retraining.target is not set; name the "
                "column to predict (MLOPS_RETRAINING__TARGET)"
            )
        return TrainingSource(data=conf.data, target=conf.target, task=conf.task, source=conf.data)
    dataset = conf.dataset
    if "dataset" not in conf.model_fields_set and model_name in BUILTIN_DATASETS:
        dataset = model_name
    if not dataset:
        raise ConfigError(
            "no retraining source: set retraining.dataset (taxi, mammography, iris) or "
            "retraining.data and retraining.target in mlops.toml or MLOPS_RETRAINING__*"
        )
    return TrainingSource(
        dataset=dataset,
        task=conf.task,
        rows=conf.rows,
        source=f"builtin:{dataset}" + (f"?rows={conf.rows}" if conf.rows else ""),
    )


def _read_source(
    settings: Settings, source: TrainingSource
) -> tuple[pd.DataFrame, str, str | None]:
    """The source's raw table, its target column and its task (when known)."""
    if source.dataset is not None:
        builtin = load_builtin(source.dataset, rows=source.rows, seed=settings.seed)
        return builtin.frame, builtin.target, source.task or str(builtin.task)
    assert source.data is not None and source.target is not None
    return read_table(source.data, aws=settings.aws), source.target, source.task


def retraining_data(settings: Settings, model_name: str) -> TrainingSource:
    """The training data of a retraining: the configured source plus labelled capture.

    Labelled capture is the prod endpoint's captured requests joined with their ground
    truth (``retraining.include_labelled_capture``). When there is any, the source's
    features (after the pipeline's feature engineering) and the labelled rows are written
    as one parquet table under ``<work_dir>/retraining/<model>/``, which the training
    pipeline then reads as ``data`` with the source's target; otherwise the source is
    returned as configured.
    """
    source = configured_source(settings, model_name)
    if not settings.retraining.include_labelled_capture:
        return source
    raw, target, task = _read_source(settings, source)
    table, _ = engineer_features(raw, target)
    features = [c for c in table.columns if c != target]
    labelled, notes = labelled_capture(settings, model_name, features, target, table[target])
    if labelled is None or labelled.empty:
        return source.model_copy(update={"notes": [*source.notes, *notes]})
    import pandas as pd

    combined = pd.concat([table[[*features, target]], labelled], ignore_index=True)
    out = (
        settings.work_dir / "retraining" / model_name / f"{frame_digest(combined)[:16]}.parquet"
    ).resolve()
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(combined, out)
    notes.append(
        f"{len(labelled)} labelled captured rows added to {len(table)} rows of {source.source}"
    )
    logger.info("retraining %s on %s (%s)", model_name, out, notes[-1])
    return TrainingSource(
        data=str(out),
        target=target,
        task=task,
        source=source.source,
        labelled_rows=len(labelled),
        notes=[*source.notes, *notes],
    )


def labelled_capture(
    settings: Settings,
    model_name: str,
    features: list[str],
    target: str,
    source_target: pd.Series,
) -> tuple[pd.DataFrame | None, list[str]]:
    """Captured requests of the prod endpoint joined with ground truth, as training rows.

    Every variant's capture so far is read with ``features`` (records of another shape are
    skipped and counted by the reader), joined with every ground-truth record on
    ``inferenceId``, else ``eventId``; rows with a label become ``features`` + ``target``,
    the label cast to the type of the source's target.

    Returns:
        The rows, or ``None`` when there are none, and notes on what was found.
    """
    import pandas as pd

    from mlops.capture import (
        join_ground_truth,
        list_variants,
        read_capture_frame,
        read_ground_truth,
    )
    from mlops.stages.deploy import endpoint_name

    endpoint = endpoint_name(settings, model_name, "prod")
    destination = _capture_destination(settings, endpoint)
    aws: dict[str, Any] = {
        "aws_region": settings.effective_aws_region,
        "aws_endpoint_url": settings.aws.endpoint_url,
    }
    variants = list_variants(destination, endpoint, **aws)
    if not variants:
        return None, [f"no capture of endpoint {endpoint} under {destination}"]
    records = list(read_ground_truth(destination, **aws))
    if not records:
        return None, [f"no ground truth under {destination} yet (mlops ground-truth add)"]
    frames = []
    for variant in variants:
        frame, _ = read_capture_frame(destination, endpoint, variant, features, **aws)
        if not frame.empty:
            frames.append(frame)
    if not frames:
        return None, [f"no captured rows of {endpoint} fit the features {features}"]
    joined, stats = join_ground_truth(pd.concat(frames, ignore_index=True), records)
    labelled = joined[joined["label"].notna()]
    rows = labelled[features].reset_index(drop=True)
    labels, unusable = _as_target(labelled["label"].reset_index(drop=True), source_target)
    rows[target] = labels
    rows = rows[labels.notna()].reset_index(drop=True)
    if pd.api.types.is_integer_dtype(source_target) and (rows[target] % 1 == 0).all():
        rows[target] = rows[target].astype(source_target.dtype)
    notes = [
        f"{len(joined)} captured rows of {endpoint}, {stats.matched} labelled "
        f"({stats.unknown_ids} labels for unknown ids)"
    ]
    if unusable:
        notes.append(f"{unusable} labels are not values of {target!r} and were left out")
    return (rows if len(rows) else None), notes


def _capture_destination(settings: Settings, endpoint: str) -> str:
    """Where the endpoint writes its capture: its own setting, else the configured one."""
    from mlops.backends import get_endpoint_backend
    from mlops.errors import EndpointNotFoundError

    try:
        with get_endpoint_backend(settings) as backend:
            state = backend.describe_endpoint(endpoint)
    except EndpointNotFoundError:
        return settings.capture_destination
    return state.capture.destination or settings.capture_destination


def _as_target(labels: pd.Series, source_target: pd.Series) -> tuple[pd.Series, int]:
    """Labels in the dtype of the source's target, and how many could not be cast."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(source_target):
        cast = pd.to_numeric(labels, errors="coerce")
    else:
        cast = labels.astype(str).where(labels.notna())
    return cast, int(cast.isna().sum() - labels.isna().sum())


def source_digest(settings: Settings, model_name: str) -> tuple[str, str]:
    """``(source, digest)`` of the configured training source (``frame_digest`` of its table)."""
    source = configured_source(settings, model_name)
    raw, _, _ = _read_source(settings, source)
    return source.source, frame_digest(raw)


def check_data_source(settings: Settings, model_name: str) -> DataWatchResult:
    """Has the training source of ``model_name`` changed since the data watch last looked?

    Compares the source's digest with ``mlops.data_watch.digest`` on the registered model.
    The first look has nothing to compare with: it is not a change (record it with
    :func:`record_data_digest`). Writes nothing.

    Raises:
        ModelNotFoundError: ``model_name`` is not registered (train it first).
    """
    client = connect(settings)
    tags = _model_tags(client, model_name)
    if tags is None:
        known = sorted(m.name for m in client.search_registered_models())
        raise ModelNotFoundError(
            f"registered model {model_name!r} does not exist (registered: "
            f"{', '.join(known) or 'none'}); train it first with `mlops train --model-name "
            f"{model_name}` before watching its data"
        )
    source, digest = source_digest(settings, model_name)
    old = tags.get(Tags.DATA_WATCH_DIGEST)
    return DataWatchResult(
        model_name=model_name,
        source=source,
        old_digest=old,
        new_digest=digest,
        changed=old is not None and old != digest,
        first_look=old is None,
    )


def record_data_digest(settings: Settings, model_name: str, digest: str) -> None:
    """Remember the digest the data watch saw (on the registered model)."""
    connect(settings).set_registered_model_tag(model_name, Tags.DATA_WATCH_DIGEST, digest)
