"""Connecting to the MLflow tracking store and opening/closing runs with explicit ids."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mlops.errors import ConfigError
from mlops.tracking.conventions import EXPERIMENT_KIND_TRAINING, Tags, experiment_description

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops.settings import Settings

__all__ = ["connect", "ensure_experiment", "finish_run", "log_summary_run", "start_run"]

_EXPORTED = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def connect(settings: Settings) -> MlflowClient:
    """Point MLflow at the settings' tracking store and model registry (``registry_uri``,
    which may be a central registry apart from this environment's tracking store) and return
    a client for both.

    MLflow's fluent API (``log_model``, ``register_model``, ``models:/`` URIs) reads
    process-wide URIs, so they are set here too.
    """
    import mlflow
    from mlflow import MlflowClient

    uri = settings.effective_tracking_uri
    registry = settings.effective_registry_uri
    if uri.startswith("sqlite:///"):
        settings.work_dir.mkdir(parents=True, exist_ok=True)
    for what, store, variable in (
        ("tracking", uri, "MLOPS_TRACKING_URI"),
        ("registry", registry, "MLOPS_REGISTRY_URI"),
    ):
        db_dir = os.path.dirname(store.removeprefix("sqlite:///"))
        if store.startswith("sqlite:///") and db_dir and not os.path.isdir(db_dir):
            raise ConfigError(
                f"{what} URI {store} needs the folder {db_dir}, which does not exist; "
                f"create it or set {variable} to another store"
            )
    # MLflow also exports these to MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI in os.environ,
    # where the next load_settings() of this process would read them as the user's own
    # variables (and a store of one call would leak into the next): keep the environment.
    saved = {name: os.environ.get(name) for name in _EXPORTED}
    try:
        mlflow.set_tracking_uri(uri)
        # models:/ URIs and mlflow.register_model follow the process-wide registry URI
        mlflow.set_registry_uri(registry)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return MlflowClient(tracking_uri=uri, registry_uri=registry)


def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri


# Kinds a person (or MLflow's UI, on purpose) chose; inferred ones are replaced by ours.
_CHOSEN_KINDS = (EXPERIMENT_KIND_TRAINING, "genai_development")


def _experiment_tags(name: str, existing: dict[str, str]) -> dict[str, str]:
    """The tags our experiments carry that ``existing`` lacks: the kind the MLflow UI opens
    them as (model training, not GenAI) and a description; a person's edits are kept."""
    missing: dict[str, str] = {}
    if existing.get(Tags.EXPERIMENT_KIND) not in _CHOSEN_KINDS:
        missing[Tags.EXPERIMENT_KIND] = EXPERIMENT_KIND_TRAINING
    if not existing.get(Tags.NOTE):
        missing[Tags.NOTE] = experiment_description(name)
    return missing


def ensure_experiment(client: MlflowClient, name: str, settings: Settings) -> str:
    """Return the id of experiment ``name``, creating it if needed (safe under races).

    Our experiments open in the MLflow UI's model-training view and carry a description;
    one created before (or by someone else) gets both when they are missing.
    """
    from mlflow.exceptions import MlflowException

    existing = client.get_experiment_by_name(name)
    if existing is None:
        location = None
        # A local store keeps artifacts beside it, unless they must be shared (a central
        # registry's versions are read from every environment): artifact_location then.
        if settings.artifact_location or _is_local_store(settings.effective_tracking_uri):
            location = f"{settings.artifact_root}/{name}"
        try:
            return client.create_experiment(
                name, artifact_location=location, tags=_experiment_tags(name, {})
            )
        except MlflowException:
            existing = client.get_experiment_by_name(name)
            if existing is None:
                raise
    if existing.lifecycle_stage == "deleted":
        client.restore_experiment(existing.experiment_id)
    for key, value in _experiment_tags(name, existing.tags).items():
        client.set_experiment_tag(existing.experiment_id, key, value)
    return existing.experiment_id


def start_run(
    client: MlflowClient,
    settings: Settings,
    *,
    experiment: str,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Open a run and return its id.

    Under ``mlflow run`` (``MLFLOW_RUN_ID`` set) the project's run is reused, so an MLflow
    Project entry point logs into the run MLflow created for it.
    """
    parent = os.environ.get("MLFLOW_RUN_ID")
    if parent:
        run = client.get_run(parent)
        for key, value in (tags or {}).items():
            client.set_tag(parent, key, value)
        if run_name:  # MLflow named it at random
            client.update_run(parent, name=run_name)
        return run.info.run_id
    experiment_id = ensure_experiment(client, experiment, settings)
    run = client.create_run(experiment_id, run_name=run_name, tags=tags or {})
    return run.info.run_id


def finish_run(
    client: MlflowClient, run_id: str, *, failed: bool = False, end_time: float | None = None
) -> None:
    """Mark a run finished or failed (a run reused from ``mlflow run`` is left to MLflow).

    ``end_time`` (seconds since the epoch) is when what the run records ended; now when
    ``None``.
    """
    if os.environ.get("MLFLOW_RUN_ID") == run_id:
        return
    ended = None if end_time is None else int(end_time * 1000)
    client.set_terminated(run_id, "FAILED" if failed else "FINISHED", end_time=ended)


def log_summary_run(
    client: MlflowClient,
    settings: Settings,
    *,
    experiment: str,
    run_name: str,
    tags: dict[str, str],
    metrics: dict[str, float],
    params: dict[str, str] | None = None,
    failed: bool = False,
) -> str:
    """Log a finished one-shot run (an evaluation, a probe) with its values; return its id."""
    import time

    from mlflow.entities import Metric, Param

    experiment_id = ensure_experiment(client, experiment, settings)
    run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in (params or {}).items()],
    )
    client.set_terminated(run_id, "FAILED" if failed else "FINISHED")
    return run_id
