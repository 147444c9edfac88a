"""The model registry: versions, aliases, approval state."""

from __future__ import annotations

from mlops.registry.lineage import (
    link_monitoring,
    link_rollout,
    mark_live,
    mark_retired,
)
from mlops.registry.models import (
    VersionSummary,
    approve,
    find_version_by_fingerprint,
    get_alias_version,
    get_version,
    list_versions,
    register_version,
    reject,
)
from mlops.registry.promotion import promote, promotions, require_release

__all__ = [
    "VersionSummary",
    "approve",
    "find_version_by_fingerprint",
    "get_alias_version",
    "get_version",
    "link_monitoring",
    "link_rollout",
    "list_versions",
    "mark_live",
    "mark_retired",
    "promote",
    "promotions",
    "register_version",
    "reject",
    "require_release",
]
