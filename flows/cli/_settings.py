"""The settings a command runs with, its stores' drivers checked first (one clear line)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["cli_settings"]


def cli_settings() -> Settings:
    """``load_settings()``, with the tracking store's (and registry's) driver checked."""
    from mlops.settings import check_store_driver, load_settings

    settings = load_settings()
    check_store_driver(settings.effective_tracking_uri)
    if settings.registry_uri:
        check_store_driver(settings.registry_uri, "registry_uri")
    return settings
