"""Connecting to the MLflow tracking store and opening/closing runs with explicit ids."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mlops.errors import ConfigError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops.settings import Settings

__all__ = ["connect", "ensure_experiment", "finish_run", "log_summary_run", "start_run"]

_EXPORTED = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def connect(settings: Settings) -> MlflowClient:
    """Point MLflow at the settings' tracking store and return a client for it.

    MLflow's fluent API (``log_model``) reads a process-wide URI, so it is set here too.
    """
    import mlflow
    from mlflow import MlflowClient

    uri = settings.effective_tracking_uri
    if uri.startswith("sqlite:///"):
        settings.work_dir.mkdir(parents=True, exist_ok=True)
        db_dir = os.path.dirname(uri.removeprefix("sqlite:///"))
        if db_dir and not os.path.isdir(db_dir):
            raise ConfigError(
                f"tracking URI {uri} needs the folder {db_dir}, which does not exist; "
                "create it or set MLOPS_TRACKING_URI to another store"
            )
    # MLflow also exports these to MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI in os.environ,
    # where the next load_settings() of this process would read them as the user's own
    # variables (and a store of one call would leak into the next): keep the environment.
    saved = {name: os.environ.get(name) for name in _EXPORTED}
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(settings.registry_uri)  # None: the tracking store's registry
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return MlflowClient(tracking_uri=uri, registry_uri=settings.registry_uri)


def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri


def ensure_experiment(client: MlflowClient, name: str, settings: Settings) -> str:
    """Return the id of experiment ``name``, creating it if needed (safe under races)."""
    from mlflow.exceptions import MlflowException

    existing = client.get_experiment_by_name(name)
    if existing is not None:
        if existing.lifecycle_stage == "deleted":
            client.restore_experiment(existing.experiment_id)
        return existing.experiment_id
    location = None
    if _is_local_store(settings.effective_tracking_uri):
        location = f"{settings.artifact_root}/{name}"
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return again.experiment_id


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
        return run.info.run_id
    experiment_id = ensure_experiment(client, experiment, settings)
    run = client.create_run(experiment_id, run_name=run_name, tags=tags or {})
    return run.info.run_id


def finish_run(client: MlflowClient, run_id: str, *, failed: bool = False) -> None:
    """Mark a run finished or failed (a run reused from ``mlflow run`` is left to MLflow)."""
    if os.environ.get("MLFLOW_RUN_ID") == run_id:
        return
    client.set_terminated(run_id, "FAILED" if failed else "FINISHED")


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
