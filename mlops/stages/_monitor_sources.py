"""Where a monitoring run's data comes from: the endpoint, its variants and their versions."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlops.errors import EndpointNotFoundError, ModelNotFoundError
from mlops.tracking import Tags, deployments_experiment

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops.settings import Settings

__all__ = ["MonitorSources", "resolve_sources"]

logger = logging.getLogger("mlops.stages.monitor")


@dataclass
class MonitorSources:
    """The endpoint a monitor reads, grouped by the model version each variant served.

    Attributes:
        endpoint: endpoint name.
        destination: its capture destination (folder or ``s3://``).
        metrics_dir: the folder of its per-minute metrics (local endpoints), if any.
        versions: version -> variant names that served it (and have capture).
        serving_version: the version serving now (for a run when the window is empty).
        unmapped: variants with capture whose version is unknown or another model's.
    """

    endpoint: str
    destination: str
    metrics_dir: str | None
    versions: dict[str, list[str]] = field(default_factory=dict)
    serving_version: str | None = None
    unmapped: list[str] = field(default_factory=list)


def _known_models(client: MlflowClient) -> list[str]:
    return sorted(m.name for m in client.search_registered_models())


def require_model(client: MlflowClient, model_name: str) -> None:
    """Raise :class:`ModelNotFoundError` listing the registered models when it is unknown."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(model_name)
    except MlflowException:
        known = _known_models(client)
        raise ModelNotFoundError(
            f"registered model {model_name!r} does not exist; known models: "
            f"{', '.join(known) or 'none (train one with `mlops train`)'}"
        ) from None


def _rollout_variants(client: MlflowClient, model_name: str, endpoint: str) -> dict[str, str]:
    """variant -> version from the model's rollout records on this endpoint (oldest first)."""
    experiment = client.get_experiment_by_name(deployments_experiment(model_name))
    if experiment is None:
        return {}
    mapping: dict[str, str] = {}
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlops.endpoint` = '{endpoint}'",
        order_by=["attributes.start_time ASC"],
        max_results=1000,
    )
    for run in runs:
        params = run.data.params
        for side in ("blue", "green"):
            variant, version = params.get(f"{side}_variant"), params.get(f"{side}_version")
            if variant and version:
                mapping[variant] = version
    return mapping


def _version_from_name(client: MlflowClient, model_name: str, variant: str) -> str | None:
    """``v3`` or ``<model>-v3`` (the names mlops gives variants) when that version exists."""
    import re

    from mlflow.exceptions import MlflowException

    match = re.fullmatch(rf"(?:{re.escape(model_name.replace('_', '-'))}-)?v(\d+)", variant)
    if match is None:
        return None
    try:
        client.get_model_version(model_name, match[1])
    except MlflowException:
        return None
    return match[1]


def resolve_sources(
    settings: Settings,
    client: MlflowClient,
    model_name: str,
    endpoint: str,
    capture: str | None,
) -> MonitorSources:
    """Find the endpoint's capture, its variants and the version behind each.

    A variant's version comes from the endpoint's live state, else from the rollout records
    (variants retired since the window was served), else from the variant's name as mlops
    gives it (``v3``, ``<model>-v3``).

    Raises:
        EndpointNotFoundError: neither a local endpoint nor any capture of that name; the
            message lists the endpoints that exist.
    """
    from mlops.backends import get_endpoint_backend
    from mlops.capture import list_variants

    with get_endpoint_backend(settings) as backend:
        try:
            state = backend.describe_endpoint(endpoint)
            known: list[str] = []
        except EndpointNotFoundError:
            state, known = None, sorted(e.name for e in backend.list_endpoints())
    destination = capture or (
        state.capture.destination if state is not None and state.capture.destination else None
    )
    destination = destination or settings.capture_destination
    aws = {
        "aws_region": settings.effective_aws_region,
        "aws_endpoint_url": settings.aws.endpoint_url,
    }
    captured = list_variants(destination, endpoint, **aws)
    if state is None and not captured:
        names = known
        raise EndpointNotFoundError(
            f"endpoint {endpoint!r} has neither a local endpoint nor capture under "
            f"{destination}; endpoints: {', '.join(names) or 'none'} (pass --endpoint, or "
            "--capture for capture written elsewhere)"
        )
    mapping = _rollout_variants(client, model_name, endpoint)
    serving_version = None
    if state is not None:
        for variant in state.variants:
            if variant.model_name == model_name and variant.model_version:
                mapping[variant.name] = str(variant.model_version)
                if not variant.shadow and variant.weight > 0:
                    serving_version = str(variant.model_version)
            elif variant.model_name and variant.model_name != model_name:
                mapping.pop(variant.name, None)
    sources = MonitorSources(
        endpoint=endpoint,
        destination=destination,
        metrics_dir=state.metrics_dir if state is not None else None,
        serving_version=serving_version,
    )
    for variant in captured:
        version = mapping.get(variant) or _version_from_name(client, model_name, variant)
        if version is None:
            sources.unmapped.append(variant)
            continue
        sources.versions.setdefault(version, []).append(variant)
    if sources.unmapped:
        logger.warning(
            "%s: capture of variant(s) %s is not from a known version of %s; left out",
            endpoint,
            ", ".join(sources.unmapped),
            model_name,
        )
    if serving_version is None:
        alias = client.get_registered_model(model_name).aliases.get("champion")
        serving_version = str(alias) if alias is not None else None
        sources.serving_version = serving_version
    return sources


def version_tags(client: MlflowClient, model_name: str, version: str) -> dict[str, str]:
    """The version's tags (baseline URI, training run) — fetched once per monitored version."""
    from mlops.registry import get_version

    return dict(get_version(client, model_name, version).tags)


def tested_metrics(client: MlflowClient, model_name: str, version: str) -> dict[str, float]:
    """The version's test-split metrics from its training run, without the ``test_`` prefix."""
    from mlops.registry import get_version

    mv = get_version(client, model_name, version)
    run_id = mv.tags.get(Tags.TRAINING_RUN_ID) or mv.run_id
    if not run_id:
        return {}
    metrics = client.get_run(run_id).data.metrics
    return {k.removeprefix("test_"): v for k, v in metrics.items() if k.startswith("test_")}
