"""The ``deployment-pipeline`` flow, built from the declaration
:data:`mlops.pipelines.DEPLOYMENT`: dev endpoint → evaluate → approval → prod rollout.

Every declared step is a Prefect task but ``approval``: the flow replaces the registry check
with a Prefect pause with a typed input form (the Prefect UI shows it on the paused run);
``mlops approve|reject`` answers the same pause from a shell. The steps' results go to the
pipeline's MLflow run in ``<model>/deployments``, as in every other runtime.
"""

from __future__ import annotations

import getpass
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field

from flows.artifacts import ModelLink, RunRef, artifact_key, publish
from flows.events import emit_model_event
from flows.hooks import flow_settings, forward_mlops_logs, notify_failure
from flows.notify import send_notification
from flows.run_names import deployment_run_name
from flows.steps import step_tasks
from flows.summaries import DeploymentReport
from mlops import registry
from mlops.errors import MlopsError, RolloutError
from mlops.pipelines import DEPLOYMENT, Step, StepContext
from mlops.pipelines.deployment import (
    ApprovalResult,
    close_deployment_run,
    policy_of,
    record_approval,
    resolve_version,
)
from mlops.pipelines.spec import run_pipeline
from mlops.rollout import RolloutResult
from mlops.settings import Settings
from mlops.stages import load_result
from mlops.stages.deploy import EndpointEvaluation
from mlops.tracking import Events, Tags, connect, deployments_experiment

__all__ = [
    "APPROVAL_FLOW_RUN_TAG",
    "ApprovalInput",
    "deployment_pipeline",
]

APPROVAL_FLOW_RUN_TAG = "mlops.approval_flow_run_id"
DEMO_APPROVER = "mlops demo (auto-approved)"


class ApprovalInput(RunInput):
    """The approval form of a paused deployment-pipeline run."""

    decision: Literal["approve", "reject"] = Field(
        "approve", description="approve rolls the version out to prod; reject stops here"
    )
    approver: str = Field(description="who decides (recorded in mlops.approved_by)")
    comment: str = Field("", description="why (recorded in mlops.approval_comment)")


#: One task per step of the deployment pipeline's declaration (mlops.pipelines.DEPLOYMENT);
#: the flow runs its ``approval`` step itself, as a pause for the approvers' answer.
STEP_TASKS, _as_task = step_tasks(DEPLOYMENT)


class _Rejected(Exception):
    """The approvers rejected the version: the pipeline stops, nothing is rolled out."""


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
    version = resolve_version(settings, model_name, version)
    params = {
        "version": version,
        "traffic_routing": traffic_routing,
        "canary_size": canary_size,
        "linear_step": linear_step,
        "wait_interval_s": wait_interval_s,
        "termination_wait_s": termination_wait_s,
    }
    policy = policy_of(settings, params)
    report = DeploymentReport(model_name=model_name, version=version, policy=policy)
    try:
        return _deploy(settings, report, params, auto_approve, approval_timeout_s)
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
    report: DeploymentReport,
    params: dict[str, Any],
    auto_approve: bool,
    approval_timeout_s: int,
) -> RolloutResult | None:
    """The declared steps, each a task but ``approval`` (the pause); ``report`` is filled in
    as they finish."""
    pipeline_run: list[str] = []

    def call(step: Step, context: StepContext, inputs: dict[str, Any]) -> Any:
        if not pipeline_run:
            pipeline_run.append(context.run_id)
        if step.name == "approval":
            return _approval(settings, report, context.run_id, auto_approve, approval_timeout_s)
        try:
            result = _as_task(step, context, inputs)
        except RolloutError:
            if step.name == "rollout_prod":  # rolled back: its record is in the run
                _rolled_back(settings, context.run_id, report)
            raise
        if step.name == "deploy_dev":
            report.dev = result
        elif step.name == "evaluate_endpoint":
            report.evaluation = result
        elif step.name == "rollout_prod":
            report.prod = result
        return result

    tags = {Tags.PREFECT_FLOW_RUN_ID: str(flow_run.id)}
    try:
        with forward_mlops_logs():
            _, done = run_pipeline(
                DEPLOYMENT, settings, model_name=report.model_name, params=params, tags=tags,
                call=call,
            )  # fmt: skip
    except _Rejected:
        close_deployment_run(settings, pipeline_run[0], False)  # decided, not failed
        return None
    result = done["rollout_prod"]
    assert isinstance(result, RolloutResult)
    emit_model_event(Events.ROLLOUT_COMPLETED, report.model_name, _payload(result))
    logger = get_run_logger()
    logger.info(
        "%s; champion is now v%s (record: %s)", result.summary(), report.version, _where(result)
    )
    return result


def _where(result: RolloutResult) -> str:
    return (
        f"MLflow experiment {deployments_experiment(result.model_name)!r}, "
        f"run {result.record_run_id}"
    )


def _payload(result: RolloutResult) -> dict[str, Any]:
    return {
        "version": result.green_version,
        "endpoint": result.endpoint,
        "blue_variant": result.blue_variant,
        "green_variant": result.green_variant,
        "reason": result.reason,
        "alarm": result.alarm,
        "record_run_id": result.record_run_id,
    }


def _rolled_back(settings: Settings, run_id: str, report: DeploymentReport) -> None:
    """The prod rollout rolled back: record it in the report, tell the event bus and the
    approvers (the task fails with :func:`rolled_back_message`)."""
    result = load_result(connect(settings), run_id, "rollout_prod", RolloutResult)
    report.prod = result
    emit_model_event(Events.ROLLOUT_ROLLED_BACK, result.model_name, _payload(result))
    send_notification(
        settings,
        f"mlops: rollout of {result.model_name} v{result.green_version} to {result.endpoint} "
        "rolled back",
        f"{result.reason}. "
        + (f"All traffic is back on {result.blue_variant}; " if result.blue_variant else "")
        + f"the champion is unchanged. Rollout record: {_where(result)}.",
    )


def _approval(
    settings: Settings,
    report: DeploymentReport,
    run_id: str,
    auto_approve: bool,
    approval_timeout_s: int,
) -> ApprovalResult:
    """The ``approval`` step as a Prefect pause: the form on the paused run, or ``mlops
    approve|reject``; the answer goes to the central registry and the pipeline run."""
    logger = get_run_logger()
    client = connect(settings)
    model_name, version, evaluation = report.model_name, report.version, report.evaluation
    assert evaluation is not None
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
        client.set_model_version_tag(model_name, version, APPROVAL_FLOW_RUN_TAG, str(flow_run.id))
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
        record_approval(settings, run_id, model_name, version, require=False)
        logger.info(
            "%s v%s rejected by %s; champion unchanged", model_name, version, answer.approver
        )
        raise _Rejected
    registry.approve(client, model_name, version, comment=answer.comment, approver=answer.approver)
    emit_model_event(
        Events.MODEL_APPROVED,
        model_name,
        {"version": version, "approver": answer.approver, "comment": answer.comment},
    )
    return record_approval(settings, run_id, model_name, version)
