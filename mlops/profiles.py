"""Environment profiles of the project file: ``[env.dev]``, ``[env.prod]``...

A profile is a table of ``mlops.toml`` whose keys override the file's base settings when the
environment is selected (``mlops --env prod``, ``MLOPS_ENV=prod``, or ``environment = "prod"``
at the top of the file)::

    registry_uri = "sqlite:////srv/mlops/registry.db"     # one central registry
    artifact_location = "/srv/mlops/artifacts"            # reachable from every environment

    [env.dev]
    work_dir = ".mlops-dev"

    [env.prod]
    work_dir = "/srv/mlops/prod"
    tracking_uri = "postgresql://mlflow@db/prod"
    [env.prod.rollout]
    prod_endpoint = "{model}-live"

Tables merge key by key (``[env.prod.rollout]`` changes one key of ``[rollout]``); any other
value replaces the base one. Environment variables still win over a profile, as they win over
the whole file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlops.errors import ConfigError

__all__ = ["PROFILES_TABLE", "apply_profile", "profile_names", "validate_environment_name"]

#: The project file's table of profiles.
PROFILES_TABLE = "env"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")


def validate_environment_name(name: str) -> str:
    """Return ``name`` when it can name an environment (a tag key carries it), else raise."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"environment {name!r} is not a valid name; use a letter followed by up to 31 "
            "letters, digits, '-' or '_' (e.g. dev, prod)"
        )
    return name


def profile_names(project_file: str | Path) -> list[str]:
    """The environments ``project_file`` has a profile for (none when it does not exist).

    Raises:
        ConfigError: the file is not valid TOML.
    """
    import tomllib

    path = Path(project_file)
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot parse {path}: {exc}; fix the TOML syntax") from None
    profiles = data.get(PROFILES_TABLE)
    return sorted(profiles) if isinstance(profiles, dict) else []


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_profile(
    data: dict[str, Any],
    environment: str | None,
    *,
    source: str,
    known_keys: Iterable[str],
    required: bool = True,
) -> dict[str, Any]:
    """The project file's settings with the profile of ``environment`` merged over them.

    Args:
        data: the parsed project file (may hold the ``[env]`` table of profiles).
        environment: the selected profile; ``None`` uses the file's ``environment`` key, if any.
        source: the file's name, for messages.
        known_keys: top-level setting names, so a misspelt key names its profile.
        required: whether a missing profile is an error (it is when a user selected it;
            settings built whole in code, e.g. a flow's parameter, need no profile).

    Raises:
        ConfigError: the environment has no profile, or a profile is not a table of settings.
    """
    data = dict(data)
    profiles = data.pop(PROFILES_TABLE, {})
    if not isinstance(profiles, dict) or any(not isinstance(p, dict) for p in profiles.values()):
        raise ConfigError(
            f"[{PROFILES_TABLE}] in {source} must hold one table per environment, e.g. "
            f"[{PROFILES_TABLE}.prod] with the settings that differ in prod"
        )
    selected = environment or data.get("environment")
    if not selected:
        return data
    validate_environment_name(selected)
    if selected not in profiles and not required:
        return data
    if selected not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(
            f"environment {selected!r} has no profile in {source} (profiles: {known}); add a "
            f"[{PROFILES_TABLE}.{selected}] table with its settings, or choose one of the "
            "profiles with --env / MLOPS_ENV"
        )
    profile = profiles[selected]
    allowed = set(known_keys) - {"environment"}
    unknown = sorted(key for key in profile if key not in allowed)
    if unknown:
        raise ConfigError(
            f"[{PROFILES_TABLE}.{selected}] in {source} sets {', '.join(unknown)}, which "
            f"{'is not a setting' if len(unknown) == 1 else 'are not settings'}; a profile "
            "overrides top-level settings (see `mlops config show` for their names)"
        )
    merged = _merge(data, profile)
    merged["environment"] = selected
    return merged
