"""The ``deployment-pipeline`` flow: dev endpoint → evaluate → approval pause → prod rollout.

The approval is a Prefect pause with a typed input form (the Prefect UI shows it on the
paused run); ``mlops approve|reject`` answers the same pause from a shell.
"""

from __future__ import annotations

import getpass
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field

from flows.artifacts import ModelLink, RunRef, artifact_key, publish
from flows.events import emit_model_event
from flows.hooks import flow_settings, forward_mlops_logs, notify_failure
from flows.notify import send_notification
from flows.run_names import deployment_run_name
from flows.summaries import DeploymentReport
from mlops import registry
from mlops.errors import MlopsError, ModelNotFoundError, RolloutError
from mlops.policy import BlueGreenPolicy
from mlops.rollout import RolloutResult
from mlops.settings import Settings
from mlops.stages import deploy
from mlops.stages.deploy import EndpointEvaluation
from mlops.tracking import ALIAS_CHALLENGER, Events, Tags, connect, deployments_experiment

__all__ = [
    "APPROVAL_FLOW_RUN_TAG",
    "ApprovalInput",
    "deployment_pipeline",
]

APPROVAL_FLOW_RUN_TAG = "mlops.approval_flow_run_id"
DEMO_APPROVER = "mlops demo (auto-approved)"
_TASK_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


class ApprovalInput(RunInput):
    """The approval form of a paused deployment-pipeline run."""

    decision: Literal["approve", "reject"] = Field(
        "approve", description="approve rolls the version out to prod; reject stops here"
    )
    approver: str = Field(description="who decides (recorded in mlops.approved_by)")
    comment: str = Field("", description="why (recorded in mlops.approval_comment)")


@task(name="deploy-dev", task_run_name="deploy-dev {model_name} v{version}", **_TASK_OPTIONS)
def deploy_dev_task(
    settings: Settings, model_name: str, version: str, tags: dict[str, str]
) -> RolloutResult:
    """Put the version on the dev endpoint."""
    return deploy.deploy_dev(settings, model_name, version, tags=tags)


@task(
    name="evaluate-endpoint",
    task_run_name="evaluate-endpoint {model_name} v{version}",
    **_TASK_OPTIONS,
)
def evaluate_endpoint_task(
    settings: Settings, model_name: str, version: str, tags: dict[str, str]
) -> EndpointEvaluation:
    """Score the test split through the dev endpoint; it must match training's metrics."""
    return deploy.evaluate_on_endpoint(settings, model_name, version, tags=tags)


@task(name="rollout-prod", task_run_name="rollout-prod {model_name} v{version}", **_TASK_OPTIONS)
def rollout_prod_task(
    settings: Settings,
    model_name: str,
    version: str,
    policy: BlueGreenPolicy,
    tags: dict[str, str],
) -> RolloutResult:
    """Blue/green rollout of the approved version on the prod endpoint."""
    return deploy.deploy_prod(settings, model_name, version, policy=policy, tags=tags)


def _approval_form(
    model_name: str, version: str, evaluation: EndpointEvaluation
) -> type[ApprovalInput]:
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in evaluation.metrics.items())
    description = (
        f"## Approve {model_name} v{version} for production?\n\n"
        f"Evaluated through `{evaluation.endpoint}` on {evaluation.rows} held-out rows: "
        f"{metrics}.\n\n{evaluation.reason}.\n\n"
        f"Approve to roll it out to prod with the blue/green policy; reject to keep the "
        f"current champion. The same answer can be given with `mlops approve {model_name} "
        f"{version}` or `mlops reject {model_name} {version}`."
    )
    return ApprovalInput.with_initial_data(description=description, approver=getpass.getuser())


def _request_approval(
    settings: Settings, model_name: str, version: str, evaluation: EndpointEvaluation
) -> None:
    """Tell the approvers that a version waits for them, and how to answer."""
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in evaluation.metrics.items())
    where = f"flow run {flow_run.name} ({flow_run.id})"
    if flow_run.ui_url:
        where += f": {flow_run.ui_url}"
    send_notification(
        settings,
        f"mlops: {model_name} v{version} waits for approval",
        f"{model_name} v{version} is on {evaluation.endpoint} and scored {metrics} on "
        f"{evaluation.rows} held-out rows ({evaluation.reason}). Approve it for production "
        f"with `mlops approve {model_name} {version}` (or `mlops reject {model_name} "
        f"{version}`), or answer the form on the paused deployment-pipeline {where}.",
    )
    emit_model_event(
        Events.APPROVAL_REQUESTED,
        model_name,
        {"version": version, "flow_run_id": str(flow_run.id), "metrics": evaluation.metrics},
    )


@flow(
    name="deployment-pipeline",
    flow_run_name=deployment_run_name,
    on_failure=[notify_failure],
    on_crashed=[notify_failure],
    log_prints=True,
)
def deployment_pipeline(
    model_name: str = "taxi",
    version: str | None = None,
    auto_approve: bool = False,
    approval_timeout_s: int = 7 * 24 * 3600,
    traffic_routing: Literal["ALL_AT_ONCE", "CANARY", "LINEAR"] | None = None,
    canary_size: float | None = None,
    linear_step: float | None = None,
    wait_interval_s: float | None = None,
    termination_wait_s: float | None = None,
    settings: Settings | None = None,
) -> RolloutResult | None:
    """Deploy a version to dev, evaluate it there, wait for approval, roll it out to prod.

    Args:
        model_name: registered model.
        version: version to ship; default the ``challenger``.
        auto_approve: approve without pausing (demo mode; recorded as such).
        approval_timeout_s: how long the approval pause waits before the run fails.
        traffic_routing: ALL_AT_ONCE, CANARY or LINEAR (default from settings.rollout).
        canary_size: percent of traffic on green during the canary step.
        linear_step: percent per LINEAR step.
        wait_interval_s: bake time after each traffic shift.
        termination_wait_s: wait before blue is retired.
        settings: effective settings; loaded from mlops.toml and MLOPS_* when left out.

    Returns:
        The prod rollout record, or ``None`` when the version was rejected.
    """
    settings = flow_settings(settings)
    client = connect(settings)
    if version is None:
        challenger = registry.get_alias_version(client, model_name, ALIAS_CHALLENGER)
        if challenger is None:
            raise ModelNotFoundError(
                f"{model_name} has no {ALIAS_CHALLENGER!r} version to deploy; train one "
                f"(mlops train --model-name {model_name}) or pass version="
            )
        version = str(challenger.version)
    version = str(registry.get_version(client, model_name, version).version)
    policy = settings.rollout.policy(
        traffic_routing=traffic_routing,
        canary_size=canary_size,
        linear_step=linear_step,
        wait_interval_s=wait_interval_s,
        termination_wait_s=termination_wait_s,
    )
    tags = {Tags.PREFECT_FLOW_RUN_ID: str(flow_run.id)}
    report = DeploymentReport(model_name=model_name, version=version, policy=policy)
    try:
        return _deploy(settings, client, report, auto_approve, approval_timeout_s, tags)
    except MlopsError as exc:
        if not isinstance(exc, RolloutError) or report.prod is None:
            report.error = str(exc)
        raise
    finally:
        _publish_report(settings, report)


def _publish_report(settings: Settings, report: DeploymentReport) -> None:
    """The run's summary and links: dev record, endpoint evaluation, prod record, version."""
    runs = [
        RunRef("dev rollout", report.dev.record_run_id if report.dev else None, ("rollout",)),
        RunRef("endpoint evaluation", report.evaluation.run_id if report.evaluation else None),
        RunRef("prod rollout", report.prod.record_run_id if report.prod else None, ("rollout",)),
    ]
    publish(
        settings,
        artifact_key(report.model_name, "deployment"),
        report.summary(),
        runs=runs,
        models=[ModelLink(report.model_name, report.version)],
    )


def _deploy(
    settings: Settings,
    client: Any,
    report: DeploymentReport,
    auto_approve: bool,
    approval_timeout_s: int,
    tags: dict[str, str],
) -> RolloutResult | None:
    """The pipeline's steps; ``report`` is filled in as they finish."""
    logger = get_run_logger()
    model_name, version, policy = report.model_name, report.version, report.policy
    with forward_mlops_logs():
        report.dev = deploy_dev_task(settings, model_name, version, tags)
        evaluation = report.evaluation = evaluate_endpoint_task(settings, model_name, version, tags)
        if auto_approve:
            answer = ApprovalInput(
                decision="approve",
                approver=DEMO_APPROVER,
                comment="demo mode approves automatically",
            )
            logger.warning("demo mode: %s v%s approved automatically", model_name, version)
        else:
            logger.info(
                "waiting for approval of %s v%s: answer the form on this flow run in the Prefect "
                "UI, or run `mlops approve %s %s` / `mlops reject %s %s`",
                model_name,
                version,
                model_name,
                version,
                model_name,
                version,
            )
            # `mlops approve|reject` finds the pause to answer through this tag
            client.set_model_version_tag(
                model_name, version, APPROVAL_FLOW_RUN_TAG, str(flow_run.id)
            )
            _request_approval(settings, model_name, version, evaluation)
            answer = pause_flow_run(
                wait_for_input=_approval_form(model_name, version, evaluation),
                timeout=approval_timeout_s,
                poll_interval=2,
            )
            client.delete_model_version_tag(model_name, version, APPROVAL_FLOW_RUN_TAG)
        report.decision, report.approver = answer.decision, answer.approver
        report.comment = answer.comment
        if answer.decision == "reject":
            registry.reject(
                client, model_name, version, comment=answer.comment, approver=answer.approver
            )
            logger.info(
                "%s v%s rejected by %s; champion unchanged", model_name, version, answer.approver
            )
            return None
        registry.approve(
            client, model_name, version, comment=answer.comment, approver=answer.approver
        )
        emit_model_event(
            Events.MODEL_APPROVED,
            model_name,
            {"version": version, "approver": answer.approver, "comment": answer.comment},
        )
        result = report.prod = rollout_prod_task(settings, model_name, version, policy, tags)
    payload = {
        "version": version,
        "endpoint": result.endpoint,
        "blue_variant": result.blue_variant,
        "green_variant": result.green_variant,
        "reason": result.reason,
        "alarm": result.alarm,
        "record_run_id": result.record_run_id,
    }
    where = f"MLflow experiment {deployments_experiment(model_name)!r}, run {result.record_run_id}"
    if not result.completed:
        emit_model_event(Events.ROLLOUT_ROLLED_BACK, model_name, payload)
        send_notification(
            settings,
            f"mlops: rollout of {model_name} v{version} to {result.endpoint} rolled back",
            f"{result.reason}. "
            + (f"All traffic is back on {result.blue_variant}; " if result.blue_variant else "")
            + f"the champion is unchanged. Rollout record: {where}.",
        )
        raise RolloutError(
            f"rollout of {model_name} v{version} to {result.endpoint} rolled back: "
            f"{result.reason}; champion unchanged (record: {where})"
        )
    emit_model_event(Events.ROLLOUT_COMPLETED, model_name, payload)
    logger.info("%s; champion is now v%s (record: %s)", result.summary(), version, where)
    return result
