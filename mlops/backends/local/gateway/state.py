"""The persisted state of a local endpoint: ``<endpoints_dir>/<name>/endpoint.json``.

Beside it the gateway keeps its per-minute metrics in ``<endpoints_dir>/<name>/metrics/``.

The manager writes it once, before the gateway runs; from then on the gateway owns it and
rewrites it (atomically) whenever a variant, a weight or a status changes, so a gateway
started again later restores the same variants, weights and ports from it. Every write also
leaves a copy in ``endpoint.json.bak``: a damaged state file (cut short, hand-edited, not
UTF-8) is read from that copy, with a warning, instead of losing the endpoint.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlops.errors import EndpointError, EndpointNotFoundError, EndpointStateError

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = [
    "MAX_LOCAL_INSTANCES",
    "AutoscalingState",
    "CaptureState",
    "EndpointState",
    "EndpointStatus",
    "InstanceState",
    "ScalingActivity",
    "VariantState",
    "VariantStatus",
    "backup_path",
    "damaged_endpoints",
    "endpoint_dir",
    "endpoint_metrics_dir",
    "load_state",
    "resolve_model_dir",
    "save_state",
    "state_path",
    "utcnow",
    "validate_name",
    "write_atomically",
]

logger = logging.getLogger(__name__)

EndpointStatus = Literal["Creating", "InService", "Updating", "Failed", "Deleting", "OutOfService"]
VariantStatus = Literal["Creating", "InService", "Failed"]

STATE_FILE = "endpoint.json"
BACKUP_FILE = "endpoint.json.bak"
METRICS_DIR = "metrics"
# Model-server processes one variant may run (SageMaker's own per-variant cap).
MAX_LOCAL_INSTANCES = 100
MAX_ACTIVITIES = 50
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


class InstanceState(_Model):
    """One model-server process of a variant (an instance, in SageMaker's words)."""

    id: int = Field(0, ge=0, description="numbers the instance's log file; 0: <variant>.log")
    port: int | None = None
    pid: int | None = None
    status: VariantStatus = "Creating"
    failure_reason: str | None = None


class VariantState(_Model):
    """One production or shadow variant: model-server processes behind the gateway.

    ``port``, ``pid``, ``status`` and ``failure_reason`` are those of its first instance
    (``status``: ``InService`` while any instance serves); ``instances`` lists them all and
    ``instance_count`` is how many it should run (the autoscaler's desired count).
    """

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
    instance_count: int = Field(1, ge=1, le=MAX_LOCAL_INSTANCES)
    instances: list[InstanceState] = Field(default_factory=list)

    @model_validator(mode="after")
    def _first_instance(self) -> VariantState:
        # A state saved before instances existed: its one process is the first instance.
        if not self.instances:
            self.__dict__["instances"] = [
                InstanceState(
                    port=self.port,
                    pid=self.pid,
                    status=self.status,
                    failure_reason=self.failure_reason,
                )
            ]
        return self

    @property
    def serving_instances(self) -> int:
        """Instances in service now (the describe's current instance count)."""
        return sum(1 for i in self.instances if i.status == "InService")


class ScalingActivity(_Model):
    """One change of a variant's instance count by the autoscaler (or its failure)."""

    at: str = Field(default_factory=utcnow)
    variant: str
    from_count: int
    to_count: int
    invocations_per_instance: float = Field(description="per minute, over the window")
    status: Literal["Successful", "Failed"] = "Successful"
    cause: str


class AutoscalingState(_Model):
    """Target tracking of an endpoint's variants (the ``[autoscaling]`` settings at create).

    Every ``evaluation_period_s`` the gateway counts each variant's invocations over the
    last period and sets its instance count to ``ceil(current * actual / target)`` within
    ``[min_instances, max_instances]``, as Application Auto Scaling's target tracking does
    on ``SageMakerVariantInvocationsPerInstance``.
    """

    enabled: bool = True
    min_instances: int = Field(1, ge=1, le=MAX_LOCAL_INSTANCES)
    max_instances: int = Field(4, ge=1, le=MAX_LOCAL_INSTANCES)
    target_invocations_per_instance: float = Field(600.0, gt=0)
    scale_out_cooldown_s: float = Field(60.0, ge=0)
    scale_in_cooldown_s: float = Field(300.0, ge=0)
    evaluation_period_s: float = Field(60.0, gt=0)
    activities: list[ScalingActivity] = Field(
        default_factory=list, description=f"the last {MAX_ACTIVITIES} scaling activities"
    )

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingState:
        if self.max_instances < self.min_instances:
            raise ValueError(
                f"max_instances={self.max_instances} is below min_instances="
                f"{self.min_instances}; set max_instances to at least min_instances"
            )
        return self

    def clamp(self, count: int) -> int:
        """``count`` within ``[min_instances, max_instances]``."""
        return max(self.min_instances, min(self.max_instances, count))

    def record(self, activity: ScalingActivity) -> None:
        """Keep ``activity``, dropping the oldest beyond the last ``MAX_ACTIVITIES``."""
        self.activities = [*self.activities, activity][-MAX_ACTIVITIES:]


class EndpointState(_Model):
    """An endpoint: its gateway, capture configuration and variants."""

    name: str
    port: int
    admin_port: int | None = Field(
        None, description="loopback port of the admin API (None: given at the next start)"
    )
    status: EndpointStatus = "Creating"
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)
    capture: CaptureState = Field(default_factory=CaptureState)
    variants: list[VariantState] = Field(default_factory=list)
    last_error: str | None = None
    gateway_pid: int | None = None
    autoscaling: AutoscalingState | None = Field(
        None, description="target tracking of the variants' instance counts; None: fixed"
    )

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

    @property
    def admin_url(self) -> str | None:
        """The admin API's base URL on loopback (``None`` until a gateway gave it a port)."""
        return None if self.admin_port is None else f"http://127.0.0.1:{self.admin_port}"


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


def backup_path(endpoints_dir: Path, name: str) -> Path:
    """The copy of the last state written for endpoint ``name`` (read when the file is damaged)."""
    return endpoint_dir(endpoints_dir, name) / BACKUP_FILE


def load_state(endpoints_dir: Path, name: str) -> EndpointState:
    """Read the state file of endpoint ``name``, or its backup when the file is damaged.

    Raises:
        EndpointNotFoundError: the endpoint does not exist (the message lists those that do).
        EndpointStateError: the state file is damaged (not UTF-8, not JSON, not a state) and
            so is its backup, or there is none; the message says how to remove the endpoint.
    """
    path = state_path(endpoints_dir, name)
    backup = path.with_name(BACKUP_FILE)
    try:
        return _parse_state(path.read_bytes())
    except FileNotFoundError:
        if not backup.exists():
            known = sorted(p.parent.name for p in endpoints_dir.glob(f"*/{STATE_FILE}"))
            raise EndpointNotFoundError(
                f"endpoint {name!r} does not exist (endpoints: {', '.join(known) or 'none'}); "
                "create it with `mlops endpoint create NAME --model REF`"
            ) from None
        problem = "it is missing"
    except (ValueError, ValidationError) as exc:
        problem = _problem(exc)
    try:
        state = _parse_state(backup.read_bytes())
    except FileNotFoundError:
        fallback = "there is no backup of it"
    except (ValueError, ValidationError) as exc:
        fallback = f"its backup {backup.name} is damaged too ({_problem(exc)})"
    else:
        logger.warning(
            "state file %s of endpoint %r is damaged (%s); using its backup %s written at %s",
            path, name, problem, backup.name, state.updated_at,
        )  # fmt: skip
        return state
    raise EndpointStateError(
        f"state file {path} of endpoint {name!r} is damaged ({problem}) and {fallback}, so "
        f"the endpoint cannot be read; remove it with `mlops endpoint delete {name} --force` "
        "(it stops the gateway and model servers still running for it and deletes "
        f"{path.parent}), then create it again"
    )


def damaged_endpoints(endpoints_dir: Path) -> dict[str, str]:
    """Endpoints whose state cannot be read (file and backup damaged): name → the problem."""
    found: dict[str, str] = {}
    if not endpoints_dir.is_dir():
        return found
    for folder in sorted(endpoints_dir.iterdir()):
        if not ((folder / STATE_FILE).exists() or (folder / BACKUP_FILE).exists()):
            continue
        try:
            load_state(endpoints_dir, folder.name)
        except EndpointStateError as exc:
            found[folder.name] = str(exc)
        except EndpointError:
            continue  # removed meanwhile, or not an endpoint's folder name
    return found


def _parse_state(data: bytes) -> EndpointState:
    return EndpointState.model_validate(json.loads(data.decode("utf-8")))


def _problem(exc: ValueError | ValidationError) -> str:
    """What is wrong with a state file, in a few words."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8: byte {exc.object[exc.start]:#04x} at offset {exc.start}"
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        return f"not an endpoint state: {where}: {first['msg']}"
    return f"not JSON: {exc}"


def save_state(endpoints_dir: Path, state: EndpointState) -> Path:
    """Write the state file atomically, then the same state to its backup."""
    path = state_path(endpoints_dir, state.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    state.updated_at = utcnow()
    text = state.model_dump_json(indent=2)
    write_atomically(path, text)
    write_atomically(path.with_name(BACKUP_FILE), text)  # its own inode: survives edits of path
    return path


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new, never a part.

    A temporary file beside it is written and fsynced, then renamed over ``path``
    (``os.replace``), then the folder is fsynced so the rename survives a power cut.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


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
