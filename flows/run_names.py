"""Flow-run names that say which model a run is about and what it does.

Prefect calls these (``flow_run_name=``) when a run starts, inside the run's context, so
they read the run's parameters from ``prefect.runtime``. Names that need the settings (the
prod endpoint's name) fall back to a plainer name when the settings cannot be loaded: the
run itself reports that error, a name must never be the reason a run fails.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from prefect.runtime import flow_run

from mlops.errors import MlopsError
from mlops.settings import Settings, load_settings
from mlops.tracking import ALIAS_CHAMPION

__all__ = [
    "batch_run_name",
    "data_watch_run_name",
    "deployment_run_name",
    "monitoring_run_name",
    "probe_run_name",
    "retraining_run_name",
    "training_run_name",
]


def _params() -> dict[str, Any]:
    return dict(flow_run.parameters or {})


def _model(params: dict[str, Any]) -> str:
    return str(params.get("model_name") or "taxi")


def _file_name(uri: object) -> str:
    return PurePosixPath(str(uri).rstrip("/")).name or str(uri)


def _prod_endpoint(params: dict[str, Any], model_name: str) -> str | None:
    if params.get("endpoint"):
        return str(params["endpoint"])
    from mlops.stages.deploy import endpoint_name

    settings = params.get("settings")
    try:
        if not isinstance(settings, Settings):
            settings = load_settings()
        return endpoint_name(settings, model_name, "prod")
    except MlopsError:
        return None


def training_run_name() -> str:
    """``train taxi``; ``train fares on fares.parquet`` for a table of one's own."""
    params = _params()
    model = _model(params)
    if params.get("data"):
        return f"train {model} on {_file_name(params['data'])}"
    dataset = params.get("dataset")
    return f"train {model} on {dataset}" if dataset and dataset != model else f"train {model}"


def deployment_run_name() -> str:
    """``deploy taxi v3 → taxi-prod`` (``challenger`` when no version is named)."""
    params = _params()
    model = _model(params)
    version = params.get("version")
    what = f"v{version}" if version else "challenger"
    endpoint = _prod_endpoint(params, model)
    return f"deploy {model} {what}" + (f" → {endpoint}" if endpoint else " to prod")


def monitoring_run_name() -> str:
    """``monitor taxi @ taxi-prod``."""
    params = _params()
    model = _model(params)
    endpoint = _prod_endpoint(params, model)
    return f"monitor {model}" + (f" @ {endpoint}" if endpoint else "")


def probe_run_name() -> str:
    """``probe taxi @ taxi-prod``."""
    params = _params()
    model = _model(params)
    endpoint = _prod_endpoint(params, model)
    return f"probe {model}" + (f" @ {endpoint}" if endpoint else "")


def batch_run_name() -> str:
    """``batch taxi 2026-11-30: fares.parquet`` (the run's scheduled day, UTC)."""
    params = _params()
    model = _model(params)
    alias = params.get("alias") or ALIAS_CHAMPION
    if alias != ALIAS_CHAMPION and "@" not in model and "/" not in model:
        model = f"{model}@{alias}"
    start = flow_run.scheduled_start_time
    day = (start if isinstance(start, datetime) else datetime.now(UTC)).strftime("%Y-%m-%d")
    name = f"batch {model} {day}"
    return f"{name}: {_file_name(params['input'])}" if params.get("input") else name


def retraining_run_name() -> str:
    """``retrain taxi: drift``."""
    from mlops.stages.retrain import model_name_of

    params = _params()
    model = model_name_of(_model(params))
    return f"retrain {model}: {params.get('reason') or 'drift'}"


def data_watch_run_name() -> str:
    """``watch data of taxi``."""
    return f"watch data of {_model(_params())}"
