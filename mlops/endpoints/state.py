"""The persisted state of a local endpoint: ``<endpoints_dir>/<name>/endpoint.json``.

Beside it the gateway keeps its per-minute metrics in ``<endpoints_dir>/<name>/metrics/``.

The manager writes it once, before the gateway runs; from then on the gateway owns it and
rewrites it (atomically) whenever a variant, a weight or a status changes, so a gateway
started again later restores the same variants, weights and ports from it.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops.errors import EndpointError, EndpointNotFoundError

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = [
    "CaptureState",
    "EndpointState",
    "EndpointStatus",
    "VariantState",
    "VariantStatus",
    "endpoint_dir",
    "endpoint_metrics_dir",
    "load_state",
    "resolve_model_dir",
    "save_state",
    "state_path",
    "utcnow",
    "validate_name",
]

EndpointStatus = Literal["Creating", "InService", "Updating", "Failed", "Deleting", "OutOfService"]
VariantStatus = Literal["Creating", "InService", "Failed"]

STATE_FILE = "endpoint.json"
METRICS_DIR = "metrics"
# SageMaker's pattern for endpoint and variant names.
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def utcnow() -> str:
    """The current time as ISO 8601 in UTC, as the state file records times."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def validate_name(name: str, kind: str = "endpoint") -> str:
    """Return ``name`` if it is a valid SageMaker endpoint or variant name.

    Args:
        name: the proposed name.
        kind: what is named ("endpoint" or "variant"), for the message.

    Raises:
        EndpointError: the name does not match ``^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$``.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise EndpointError(
            f"{kind} name {name!r} is not valid: use 1-63 letters, digits and hyphens, "
            "starting and ending with a letter or digit (SageMaker's rule), e.g. 'taxi-prod'"
        )
    return name


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=True)


class CaptureState(_Model):
    """Data capture of one endpoint (all its variants)."""

    enabled: bool = True
    destination: str | None = None
    sampling_percentage: int = Field(100, ge=0, le=100)


class VariantState(_Model):
    """One production or shadow variant: a model server process behind the gateway."""

    name: str
    model_ref: str | None = Field(None, description="e.g. models:/taxi/3 or taxi@champion")
    model_name: str | None = None
    model_version: str | None = None
    model_dir: str
    weight: float = Field(1.0, ge=0)
    shadow: bool = False
    port: int | None = None
    pid: int | None = None
    status: VariantStatus = "Creating"
    failure_reason: str | None = None


class EndpointState(_Model):
    """An endpoint: its gateway, capture configuration and variants."""

    name: str
    port: int
    status: EndpointStatus = "Creating"
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)
    capture: CaptureState = Field(default_factory=CaptureState)
    variants: list[VariantState] = Field(default_factory=list)
    last_error: str | None = None
    gateway_pid: int | None = None

    def variant(self, name: str) -> VariantState:
        """The variant called ``name``.

        Raises:
            EndpointError: no such variant; the message lists the variants.
        """
        for v in self.variants:
            if v.name == name:
                return v
        raise EndpointError(
            f"endpoint {self.name!r} has no variant {name!r} "
            f"(variants: {', '.join(v.name for v in self.variants) or 'none'})"
        )

    @property
    def url(self) -> str:
        """The gateway's base URL on loopback."""
        return f"http://127.0.0.1:{self.port}"


def endpoint_dir(endpoints_dir: Path, name: str) -> Path:
    """The folder of endpoint ``name`` (state file, gateway and variant logs)."""
    return endpoints_dir / validate_name(name)


def endpoint_metrics_dir(settings: Settings, name: str) -> Path:
    """The folder of endpoint ``name``'s per-minute metric records (the gateway writes them,
    :func:`mlops.monitoring.health.read_health` reads them); removed with the endpoint."""
    return endpoint_dir(settings.endpoints_dir, name) / METRICS_DIR


def state_path(endpoints_dir: Path, name: str) -> Path:
    """The state file of endpoint ``name``."""
    return endpoint_dir(endpoints_dir, name) / STATE_FILE


def load_state(endpoints_dir: Path, name: str) -> EndpointState:
    """Read the state file of endpoint ``name``.

    Raises:
        EndpointNotFoundError: the endpoint does not exist (the message lists those that do).
        EndpointError: the state file is not readable.
    """
    path = state_path(endpoints_dir, name)
    try:
        text = path.read_text()
    except FileNotFoundError:
        known = sorted(p.parent.name for p in endpoints_dir.glob(f"*/{STATE_FILE}"))
        raise EndpointNotFoundError(
            f"endpoint {name!r} does not exist (endpoints: {', '.join(known) or 'none'}); "
            "create it with `mlops endpoint create NAME --model REF`"
        ) from None
    try:
        return EndpointState.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise EndpointError(
            f"state file {path} of endpoint {name!r} is not valid ({exc}); "
            f"delete the endpoint with `mlops endpoint delete {name}` and create it again"
        ) from None


def save_state(endpoints_dir: Path, state: EndpointState) -> Path:
    """Write the state file atomically (temporary file, then ``os.replace``)."""
    path = state_path(endpoints_dir, state.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    state.updated_at = utcnow()
    fd, tmp = tempfile.mkstemp(prefix=".endpoint-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(state.model_dump_json(indent=2))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def resolve_model_dir(settings: Settings, model_ref: str) -> tuple[str, str | None, str | None]:
    """Resolve ``models:/NAME/VERSION`` or ``NAME@ALIAS`` and download it once, locally.

    Returns:
        The local model folder, the registered model name and the version.

    Raises:
        ModelNotFoundError: the model, version or alias does not exist.
        ServingError: the reference is malformed or the artifacts cannot be downloaded.
    """
    from mlops.serving.model import resolve_model

    resolved = resolve_model(settings, model_ref)
    return str(Path(resolved.path).resolve()), resolved.name, resolved.version
