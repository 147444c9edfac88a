"""Compute backends, registered by name and imported only when used."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from mlops.backends.base import ComputeBackend, TrainingJobResult, TrainingJobSpec
from mlops.errors import ConfigError

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["BACKENDS", "ComputeBackend", "TrainingJobResult", "TrainingJobSpec", "get_backend"]

BACKENDS: dict[str, str] = {
    "local": "mlops.backends.local.compute:LocalBackend",
}


def get_backend(settings: Settings) -> ComputeBackend:
    """Instantiate the backend named by ``settings.backend``."""
    target = BACKENDS.get(settings.backend)
    if target is None:
        raise ConfigError(
            f"backend {settings.backend!r} is not available in this version "
            f"(available: {', '.join(sorted(BACKENDS))}); set MLOPS_BACKEND=local "
            'or `backend = "local"` in mlops.toml'
        )
    module_name, _, class_name = target.partition(":")
    backend_cls = getattr(import_module(module_name), class_name)
    return backend_cls(settings)
