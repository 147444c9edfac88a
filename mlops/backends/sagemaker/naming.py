"""Names and tags of what the SageMaker endpoint backend creates, in one place.

``mlops cleanup`` finds a model's resources by these, so they are a contract: every
resource is tagged ``mlops:model`` (the registered model) and ``mlops:endpoint``; SageMaker
models are ``<endpoint>-<variant>-<short unique>``, endpoint configs
``<endpoint>-<UTC yyyymmddHHMMSS>``, CloudWatch alarms start with ``mlops-<endpoint>-``,
custom metrics live in the ``mlops`` namespace and Application Auto Scaling targets are
``endpoint/<endpoint>/variant/<variant>``.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from mlops.errors import ConfigError

__all__ = [
    "ALARM_PREFIX",
    "METRIC_NAMESPACE",
    "SCALABLE_DIMENSION",
    "SIGNAL_METRIC",
    "TAG_ENDPOINT",
    "TAG_MODEL",
    "TAG_VERSION",
    "alarm_prefix",
    "check_endpoint_name",
    "is_endpoint_alarm",
    "is_endpoint_config",
    "endpoint_config_name",
    "model_artifact_prefix",
    "resource_tags",
    "sagemaker_model_name",
    "scaling_policy_name",
    "scaling_resource_id",
]

TAG_MODEL = "mlops:model"
TAG_ENDPOINT = "mlops:endpoint"
TAG_VERSION = "mlops:version"
ALARM_PREFIX = "mlops-"
METRIC_NAMESPACE = "mlops"
SIGNAL_METRIC = "ModelSignalShift"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"

_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_MAX_NAME = 63
_STAMP_LEN = 15  # "-" + yyyymmddHHMMSS


def check_endpoint_name(name: str) -> str:
    """SageMaker's endpoint-name rule, with room for the config suffix.

    Raises:
        ConfigError: the name does not fit.
    """
    if not _NAME.fullmatch(name) or len(name) > _MAX_NAME - _STAMP_LEN:
        raise ConfigError(
            f"endpoint name {name!r} is not valid on SageMaker: use 1-{_MAX_NAME - _STAMP_LEN} "
            "letters, digits and '-', starting and ending with a letter or digit"
        )
    return name


def endpoint_config_name(endpoint: str, now: datetime | None = None) -> str:
    """``<endpoint>-<UTC yyyymmddHHMMSS>``: one per create or update."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d%H%M%S")
    return f"{endpoint}-{stamp}"


def is_endpoint_config(name: str, endpoint: str) -> bool:
    """Whether ``name`` is one of ``endpoint``'s configs (not another endpoint's whose name
    starts the same)."""
    return re.fullmatch(rf"{re.escape(endpoint)}-\d{{14}}", name) is not None


def is_endpoint_alarm(name: str, endpoint: str) -> bool:
    """Whether alarm ``name`` is one of ``endpoint``'s (``mlops-<endpoint>-<stamp>-...``)."""
    return re.match(rf"{re.escape(ALARM_PREFIX + endpoint)}-\d{{14}}-", name) is not None


def sagemaker_model_name(endpoint: str, variant: str, unique: str | None = None) -> str:
    """``<endpoint>-<variant>-<short unique>`` (cut to SageMaker's 63 characters)."""
    suffix = unique or uuid.uuid4().hex[:8]
    head = f"{endpoint}-{variant}"[: _MAX_NAME - len(suffix) - 1].rstrip("-")
    return f"{head}-{suffix}"


def alarm_prefix(endpoint: str) -> str:
    """Every CloudWatch alarm of ``endpoint`` starts with this."""
    return f"{ALARM_PREFIX}{endpoint}-"


def scaling_resource_id(endpoint: str, variant: str) -> str:
    """Application Auto Scaling's ``ResourceId`` of a variant."""
    return f"endpoint/{endpoint}/variant/{variant}"


def scaling_policy_name(endpoint: str, variant: str) -> str:
    """The target-tracking policy of a variant."""
    return f"mlops-{endpoint}-{variant}-invocations"


def model_artifact_prefix(prefix: str, model_name: str, version: str) -> str:
    """Key prefix (below the bucket) of a registered version's ``model.tar.gz``."""
    parts = [p.strip("/") for p in (prefix, "models", model_name, version) if p.strip("/")]
    return "/".join(parts) + "/"


def resource_tags(model_name: str, endpoint: str, **extra: str) -> list[dict[str, str]]:
    """The tags every resource of ``endpoint`` carries (``Key``/``Value`` pairs)."""
    tags = {TAG_MODEL: model_name, TAG_ENDPOINT: endpoint, **extra}
    return [{"Key": k, "Value": str(v)} for k, v in tags.items()]
