"""One view over every model: aliases, endpoints, last monitoring and last rollout."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from mlops.tracking import (
    ALIAS_CHALLENGER,
    ALIAS_CHAMPION,
    Stages,
    Tags,
    connect,
    deployments_experiment,
    monitoring_experiment,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops.settings import Settings

__all__ = ["ModelStatus", "model_status"]


class ModelStatus(BaseModel):
    """One row of ``mlops status``."""

    model_name: str
    champion: str | None = None
    challenger: str | None = None
    endpoints: list[str] = Field(default_factory=list)
    last_monitoring: str | None = None
    last_rollout: str | None = None


def _when(ms: int | None) -> str:
    if not ms:
        return "?"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%MZ")


# Rollout records written before mlops.stage=rollout were tagged "deployment".
_FORMER_STAGES = {Stages.ROLLOUT: ("deployment",)}


def _last_run(client: MlflowClient, experiment: str, stage: str):  # noqa: ANN202 - mlflow Run
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    latest = []
    for value in (stage, *_FORMER_STAGES.get(stage, ())):  # MLflow filters tags by = only
        latest += client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.`{Tags.STAGE}` = '{value}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    return max(latest, key=lambda run: run.info.start_time, default=None)


def _version_text(client: MlflowClient, name: str, version: object | None) -> str | None:
    if version is None:
        return None
    mv = client.get_model_version(name, str(version))
    return f"v{version} ({mv.tags.get(Tags.APPROVAL, 'unknown')})"


def model_status(settings: Settings) -> list[ModelStatus]:
    """Every registered model with its champion, challenger, endpoints and last runs."""
    from mlops.backends import get_endpoint_backend

    client = connect(settings)
    with get_endpoint_backend(settings) as backend:
        endpoints = backend.list_endpoints()
    rows = []
    for model in sorted(client.search_registered_models(), key=lambda m: m.name):
        row = ModelStatus(
            model_name=model.name,
            champion=_version_text(client, model.name, model.aliases.get(ALIAS_CHAMPION)),
            challenger=_version_text(client, model.name, model.aliases.get(ALIAS_CHALLENGER))
            # the alias stays on a challenger that became champion: say so only once
            if model.aliases.get(ALIAS_CHALLENGER) != model.aliases.get(ALIAS_CHAMPION)
            else None,
        )
        for state in endpoints:
            variants = [v for v in state.variants if v.model_name == model.name]
            if not variants:
                continue
            total = sum(v.weight for v in state.variants if not v.shadow) or 1.0
            parts = [
                f"{v.name}=v{v.model_version} "
                + ("shadow" if v.shadow else f"{100 * v.weight / total:.0f}%")
                for v in variants
            ]
            row.endpoints.append(f"{state.name} [{state.status}]: {', '.join(parts)}")
        monitoring = _last_run(client, monitoring_experiment(model.name), Stages.MONITORING)
        if monitoring is not None:
            tags = monitoring.data.tags
            share = monitoring.data.metrics.get("drift_share")
            row.last_monitoring = (
                f"{_when(monitoring.info.start_time)} v{tags.get(Tags.MODEL_VERSION, '?')} "
                f"{tags.get(Tags.MONITOR_STATUS, '?')}"
                + (f" (drift share {share:.0%})" if share is not None else "")
            )
        rollout = _last_run(client, deployments_experiment(model.name), Stages.ROLLOUT)
        if rollout is not None:
            row.last_rollout = (
                f"{_when(rollout.info.start_time)} {rollout.info.run_name}: "
                f"{rollout.data.tags.get(Tags.ROLLOUT_OUTCOME, '?')}"
            )
        rows.append(row)
    return rows
