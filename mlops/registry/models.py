"""Registering versions, moving aliases and recording approval decisions."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mlops.errors import ModelNotFoundError, RegistryError
from mlops.tracking.conventions import ALIAS_CHALLENGER, Tags

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

__all__ = [
    "VersionSummary",
    "approve",
    "find_version_by_fingerprint",
    "get_alias_version",
    "list_versions",
    "register_version",
    "reject",
]

APPROVAL_STATES = ("pending", "approved", "rejected")


@dataclass(frozen=True)
class VersionSummary:
    """One registered version as ``mlops models list`` shows it."""

    name: str
    version: str
    aliases: list[str]
    approval: str
    created_at: str
    run_id: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    approved_by: str | None = None
    approved_at: str | None = None
    approval_comment: str | None = None
    deployment: str | None = None
    """``live`` (serving production), ``retired`` (replaced there), or ``None`` (never was)."""


def _model_exists(client: MlflowClient, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        return False
    return True


def get_version(client: MlflowClient, name: str, version: str | int) -> ModelVersion:
    """Fetch one version or raise :class:`ModelNotFoundError` listing what exists."""
    from mlflow.exceptions import MlflowException

    if not _model_exists(client, name):
        known = sorted(m.name for m in client.search_registered_models())
        raise ModelNotFoundError(
            f"registered model {name!r} does not exist (registered: {', '.join(known) or 'none'}); "
            "train it first with `mlops train --model-name NAME`"
        )
    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        versions = sorted(
            (int(v.version) for v in client.search_model_versions(f"name='{name}'")),
        )
        raise ModelNotFoundError(
            f"model {name!r} has no version {version} (versions: "
            f"{', '.join(map(str, versions)) or 'none'}); see `mlops models list`"
        ) from None


def get_alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version behind ``name@alias``, or ``None`` when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def find_version_by_fingerprint(
    client: MlflowClient, name: str, fingerprint: str
) -> ModelVersion | None:
    """The version already trained from exactly these inputs, if any."""
    if not _model_exists(client, name):
        return None
    matches = client.search_model_versions(
        f"name='{name}' and tags.`{Tags.FINGERPRINT}` = '{fingerprint}'"
    )
    return min(matches, key=lambda v: int(v.version)) if matches else None


def register_version(
    client: MlflowClient,
    *,
    name: str,
    model_uri: str,
    run_id: str,
    fingerprint: str,
    tags: dict[str, str],
    description: str | None = None,
    model_description: str | None = None,
) -> tuple[ModelVersion, bool]:
    """Register ``model_uri`` as a new version of ``name`` with alias ``challenger``.

    Idempotent: when a version with the same fingerprint (same data, parameters, code) exists,
    it is returned unchanged and nothing new is registered.

    Args:
        description: the new version's description (markdown).
        model_description: the registered model's description, set when it has none.

    Returns:
        The version and whether it was created now.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    existing = find_version_by_fingerprint(client, name, fingerprint)
    if existing is not None:
        pending = existing.tags.get(Tags.APPROVAL) == "pending"
        if pending and get_alias_version(client, name, ALIAS_CHALLENGER) is None:
            # An earlier attempt died between creating the version and setting its alias.
            client.set_registered_model_alias(name, ALIAS_CHALLENGER, existing.version)
            existing = client.get_model_version(name, existing.version)
        return existing, False
    new_model = not _model_exists(client, name)
    all_tags = {
        **tags,
        Tags.FINGERPRINT: fingerprint,
        Tags.TRAINING_RUN_ID: run_id,
        Tags.APPROVAL: "pending",
    }
    try:
        version = mlflow.register_model(model_uri, name, tags=all_tags)
    except MlflowException as exc:
        raise RegistryError(
            f"could not register {model_uri} as model {name!r}: {exc.message}; "
            "check that the tracking store is reachable and the model was logged"
        ) from exc
    if description:
        client.update_model_version(name, version.version, description=description)
    if new_model or not client.get_registered_model(name).description:
        client.update_registered_model(
            name,
            description=model_description
            or f"Registered by mlops; training runs in MLflow experiment {name!r}.",
        )
    client.set_registered_model_alias(name, ALIAS_CHALLENGER, version.version)
    return client.get_model_version(name, version.version), True


def _decide(
    client: MlflowClient,
    name: str,
    version: str | int,
    *,
    decision: str,
    approver: str | None,
    comment: str,
) -> ModelVersion:
    mv = get_version(client, name, version)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    who = approver or getpass.getuser()
    client.set_model_version_tag(name, mv.version, Tags.APPROVAL, decision)
    client.set_model_version_tag(name, mv.version, Tags.APPROVED_BY, who)
    client.set_model_version_tag(name, mv.version, Tags.APPROVED_AT, now)
    client.set_model_version_tag(name, mv.version, Tags.APPROVAL_COMMENT, comment)
    return client.get_model_version(name, mv.version)


def approve(
    client: MlflowClient,
    name: str,
    version: str | int,
    *,
    comment: str = "",
    approver: str | None = None,
) -> ModelVersion:
    """Mark a version approved for production (tags ``mlops.approval*``)."""
    return _decide(client, name, version, decision="approved", approver=approver, comment=comment)


def reject(
    client: MlflowClient,
    name: str,
    version: str | int,
    *,
    comment: str = "",
    approver: str | None = None,
) -> ModelVersion:
    """Mark a version rejected; it stops being the ``challenger``."""
    mv = _decide(client, name, version, decision="rejected", approver=approver, comment=comment)
    challenger = get_alias_version(client, name, ALIAS_CHALLENGER)
    if challenger is not None and challenger.version == mv.version:
        client.delete_registered_model_alias(name, ALIAS_CHALLENGER)
    return client.get_model_version(name, mv.version)


_KEY_METRICS = (
    "test_rmse",
    "test_mae",
    "test_r2",
    "test_auc",
    "test_accuracy",
    "test_f1",
    "test_macro_f1",
    "test_logloss",
)


def list_versions(client: MlflowClient, name: str | None = None) -> list[VersionSummary]:
    """Every version (of one model, or of all), newest first, with aliases and key metrics."""
    if name is not None and not _model_exists(client, name):
        get_version(client, name, 0)  # raises with the list of known models
    names = [name] if name else sorted(m.name for m in client.search_registered_models())
    rows: list[VersionSummary] = []
    for model_name in names:
        aliases_by_version: dict[str, list[str]] = {}
        for alias, ver in client.get_registered_model(model_name).aliases.items():
            aliases_by_version.setdefault(str(ver), []).append(alias)
        versions = client.search_model_versions(f"name='{model_name}'")
        for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
            metrics: dict[str, float] = {}
            if mv.run_id:
                run_metrics = client.get_run(mv.run_id).data.metrics
                metrics = {k: v for k, v in run_metrics.items() if k in _KEY_METRICS}
            rows.append(
                VersionSummary(
                    name=model_name,
                    version=str(mv.version),
                    aliases=sorted(aliases_by_version.get(str(mv.version), [])),
                    approval=mv.tags.get(Tags.APPROVAL, "unknown"),
                    created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).strftime(
                        "%Y-%m-%d %H:%M:%SZ"
                    ),
                    run_id=mv.run_id,
                    metrics=metrics,
                    approved_by=mv.tags.get(Tags.APPROVED_BY),
                    approved_at=mv.tags.get(Tags.APPROVED_AT),
                    approval_comment=mv.tags.get(Tags.APPROVAL_COMMENT),
                    deployment=mv.tags.get(Tags.DEPLOYMENT),
                )
            )
    return rows
