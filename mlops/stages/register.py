"""Register: a new registry version with alias ``challenger`` and approval ``pending``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlops.registry import register_version
from mlops.stages._progress import stage_done, stage_started
from mlops.stages.results import (
    BaselineResult,
    EvaluationResult,
    PreparedData,
    RegisteredModel,
    TrainedModel,
)
from mlops.tracking import Tags, connect

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["register"]


def register(
    settings: Settings,
    prepared: PreparedData,
    trained: TrainedModel,
    evaluation: EvaluationResult,
    baseline: BaselineResult,
) -> RegisteredModel:
    """Register the model that passed the gate, with lineage tags.

    Idempotent: re-running on the same data and parameters returns the version registered
    before instead of adding a duplicate.
    """
    if not evaluation.passed:  # the evaluate stage raises first; this guards direct callers
        from mlops.errors import GateFailedError

        raise GateFailedError(
            f"refusing to register run {trained.run_id}: it failed the quality gate "
            f"({'; '.join(evaluation.reasons)})",
            reasons=evaluation.reasons,
        )
    stage_started("register", trained.model_name)
    client = connect(settings)
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in evaluation.metrics.items())
    version, created = register_version(
        client,
        name=trained.model_name,
        model_uri=trained.model_uri,
        run_id=trained.run_id,
        fingerprint=trained.fingerprint,
        tags={
            Tags.TASK: str(prepared.task),
            Tags.TARGET: prepared.target,
            Tags.DATA_SOURCE: prepared.source,
            Tags.DATA_DIGEST: prepared.digest,
            Tags.BASELINE_URI: baseline.uri,
            Tags.TRAINING_JOB: trained.job_name,
        },
        description=f"{prepared.task} on {prepared.source}; test {metrics}",
    )
    note = "" if created else " (already registered for identical inputs)"
    client.set_tag(
        trained.run_id, "mlops.registered_as", f"{trained.model_name} v{version.version}{note}"
    )
    aliases = sorted(
        alias
        for alias, v in client.get_registered_model(trained.model_name).aliases.items()
        if str(v) == str(version.version)
    )
    stage_done(
        "register",
        f"{trained.model_name} v{version.version}"
        + ("" if created else " (existing version, identical inputs)"),
    )
    return RegisteredModel(
        name=trained.model_name,
        version=str(version.version),
        created=created,
        aliases=aliases,
        approval=version.tags.get(Tags.APPROVAL, "pending"),
        model_uri=f"models:/{trained.model_name}/{version.version}",
    )
