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
from mlops.stages.train import code_tags
from mlops.tracking import (
    Tags,
    connect,
    deployments_experiment,
    monitoring_experiment,
)
from mlops.tracking.links import experiment_path, model_version_path, run_path

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
    name = trained.model_name
    run = client.get_run(trained.run_id)
    experiment_id = run.info.experiment_id
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in evaluation.metrics.items())
    lines = [
        f"XGBoost {prepared.task} of **{prepared.target}** on {prepared.source}; test {metrics}.",
        "",
        f"- training run: [train {name}]({run_path(experiment_id, trained.run_id)})",
    ]
    if trained.model_id:
        logged_model = f"{experiment_path(experiment_id)}/models/{trained.model_id}"
        lines.append(f"- logged model: [{name}]({logged_model})")
    version, created = register_version(
        client,
        name=name,
        model_uri=trained.model_uri,
        run_id=trained.run_id,
        fingerprint=trained.fingerprint,
        tags={
            Tags.TASK: str(prepared.task),
            Tags.TARGET: prepared.target,
            Tags.DATA_SOURCE: prepared.source,
            Tags.DATA_DIGEST: prepared.digest,
            Tags.BASELINE_URI: baseline.uri,
            Tags.TRAINING_ARTIFACTS: run.info.artifact_uri,
            Tags.TRAINING_JOB: trained.job_name,
            **({Tags.TRAINING_JOB_ARN: trained.job_arn} if trained.job_arn else {}),
            **code_tags(),
        },
        description="\n".join(lines),
        model_description=(
            f"XGBoost {prepared.task} model of **{prepared.target}**, trained and registered "
            f"by mlops. Training runs: experiment [{name}]({experiment_path(experiment_id)}); "
            f"rollouts and endpoint evaluations: `{deployments_experiment(name)}`; monitoring: "
            f"`{monitoring_experiment(name)}`. Aliases: `challenger` passed the quality gate "
            "and awaits approval, `champion` serves production. Each version's tags say where "
            "it is (`mlops.deployment` = live | retired) and link its runs."
        ),
    )
    note = "" if created else " (already registered for identical inputs)"
    client.set_tag(trained.run_id, Tags.REGISTERED_AS, f"{name} v{version.version}{note}")
    client.set_tag(
        trained.run_id,
        Tags.NOTE,
        f"Trained {name} on {prepared.source} ({prepared.task} of **{prepared.target}**); "
        f"quality gate passed (test {metrics}). Registered as "
        f"[{name} v{version.version}]({model_version_path(name, version.version)}){note}.",
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
