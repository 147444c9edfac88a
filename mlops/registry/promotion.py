"""Promotion of approved versions to an environment, and the check that an environment
(prod) uses only versions approved in the central registry and promoted to it.

Approval happens once, in the registry every environment shares (``mlops approve``).
Promotion (``mlops promote NAME VERSION --to prod``) records who let an approved version into
an environment and when: version tags ``mlops.promoted.<env>.by`` / ``.at`` and a line of the
version's description. In an environment that requires promotion (``require_promotion``, on
by default in ``prod``), batch inference and deployments take a version only when it is still
approved *and* promoted there; :func:`require_release` is that check.
"""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING

from mlops.errors import ApprovalError, ConfigError
from mlops.profiles import validate_environment_name
from mlops.registry.lineage import add_version_note, now_iso
from mlops.registry.models import get_version
from mlops.tracking.conventions import Tags, promotion_tags

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from mlops.settings import Settings

__all__ = ["promote", "promotions", "require_release"]


def promote(
    client: MlflowClient,
    name: str,
    version: str | int,
    *,
    to: str,
    by: str | None = None,
    comment: str = "",
) -> ModelVersion:
    """Record that approved ``name`` v``version`` may run in environment ``to``.

    Args:
        to: the environment (a profile name, e.g. ``prod``).
        by: who promotes; the OS user when ``None``.
        comment: why, shown in the version's description.

    Raises:
        ApprovalError: the version is not approved in the registry.
        ConfigError: ``to`` is not a valid environment name.
        ModelNotFoundError: unknown model or version.
    """
    validate_environment_name(to)
    mv = get_version(client, name, version)
    approval = mv.tags.get(Tags.APPROVAL, "none")
    if approval != "approved":
        raise ApprovalError(
            f"{name} v{mv.version} cannot be promoted to {to}: it is not approved in the model "
            f"registry ({Tags.APPROVAL}={approval}); approve it first with "
            f"`mlops approve {name} {mv.version}`"
        )
    who = (by or getpass.getuser()).strip()
    if not who:
        raise ConfigError("--by is empty; say who promotes the version, e.g. --by alice")
    when = now_iso()
    by_tag, at_tag = promotion_tags(to)
    client.set_model_version_tag(name, mv.version, by_tag, who)
    client.set_model_version_tag(name, mv.version, at_tag, when)
    line = f"- promoted to **{to}** by {who} at {when}" + (f": {comment}" if comment else "")
    add_version_note(client, name, str(mv.version), line)
    return client.get_model_version(name, mv.version)


def promotions(tags: dict[str, str]) -> dict[str, tuple[str | None, str]]:
    """Environment -> (who, when) of every promotion recorded in a version's ``tags``."""
    found: dict[str, tuple[str | None, str]] = {}
    for key, value in tags.items():
        if key.startswith(Tags.PROMOTED_PREFIX) and key.endswith(".at"):
            env = key.removeprefix(Tags.PROMOTED_PREFIX).removesuffix(".at")
            found[env] = (tags.get(promotion_tags(env)[0]), value)
    return dict(sorted(found.items()))


def require_release(settings: Settings, client: MlflowClient, name: str, version: str) -> None:
    """Refuse a version this environment may not use: when it requires promotion, the
    version must be approved in the registry and promoted to it.

    Call it before anything starts (an endpoint, a download, a run).

    Raises:
        ApprovalError: not approved, or approved but not promoted to this environment.
        ConfigError: promotion is required but no environment is selected.
    """
    if not settings.requires_promotion:
        return
    env = settings.environment
    if env is None:
        raise ConfigError(
            "require_promotion is on but no environment is selected, so there is nothing to "
            "be promoted to; run with --env NAME (or MLOPS_ENV) or turn require_promotion off"
        )
    from mlops.masking import mask_uri

    mv = get_version(client, name, version)
    registry = mask_uri(settings.effective_registry_uri)
    approval = mv.tags.get(Tags.APPROVAL, "none")
    if approval != "approved":
        raise ApprovalError(
            f"refusing {name} v{mv.version} in environment {env}: it is not approved in the "
            f"model registry {registry} ({Tags.APPROVAL}={approval}); approve it there "
            f"(`mlops approve {name} {mv.version}`), then `mlops promote {name} {mv.version} "
            f"--to {env}`"
        )
    if promotion_tags(env)[1] not in mv.tags:
        raise ApprovalError(
            f"refusing {name} v{mv.version} in environment {env}: it is approved but was never "
            f"promoted to {env}; promote it with `mlops promote {name} {mv.version} --to {env}`"
        )
