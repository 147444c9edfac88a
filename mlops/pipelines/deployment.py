"""The deployment pipeline, declared once: deploy_dev → evaluate_endpoint → approval →
rollout_prod, in one MLflow run of experiment ``<model>/deployments``.

Each step's result is logged to that run (``mlops/<step>.json``), so a later step in
another process (an MLproject entry point, a Kubeflow component) reads it from there. The
rollouts and the endpoint evaluation keep their own record runs in the same experiment, and
those carry the pipeline run's id.

The ``approval`` step checks the central model registry: the version must be approved there
(``mlops approve``), else the pipeline stops with how to approve it. The Prefect flow
(``flows/deployment.py``) runs every other step as a task and replaces this one with its
pause for approval (a form on the paused run, or ``mlops approve|reject`` from a shell).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from mlops.errors import ApprovalError, ModelNotFoundError, RolloutError
from mlops.pipelines.spec import Param, Pipeline, Step, StepContext
from mlops.rollout import RolloutResult
from mlops.stages.deploy import EndpointEvaluation

if TYPE_CHECKING:
    from mlops.policy import BlueGreenPolicy
    from mlops.settings import Settings

__all__ = [
    "DEPLOYMENT",
    "PIPELINE_RUN_TAG",
    "PIPELINE_STAGE",
    "ApprovalResult",
    "close_deployment_run",
    "open_deployment_run",
    "policy_of",
    "record_approval",
    "resolve_version",
    "rolled_back_message",
]

#: ``mlops.stage`` of the pipeline's own run in ``<model>/deployments``.
PIPELINE_STAGE = "deployment-pipeline"
#: Tag on the rollout records and the endpoint evaluation: the pipeline run they belong to.
PIPELINE_RUN_TAG = "mlops.deployment_pipeline.run_id"
_POLICY_PARAMS = (
    "traffic_routing",
    "canary_size",
    "linear_step",
    "wait_interval_s",
    "termination_wait_s",
)


class ApprovalResult(BaseModel):
    """The decision on a version, as the central registry records it."""

    model_name: str
    version: str
    state: str  # mlops.approval: approved, rejected, pending (or none: never asked)
    approver: str | None = None
    approved_at: str | None = None
    comment: str = ""


def resolve_version(settings: Settings, model_name: str, version: str | None) -> str:
    """``version`` as the registry numbers it; the ``challenger`` when it is not given."""
    from mlops.registry import get_alias_version, get_version
    from mlops.tracking import ALIAS_CHALLENGER, connect

    client = connect(settings)
    if not version:
        challenger = get_alias_version(client, model_name, ALIAS_CHALLENGER)
        if challenger is None:
            raise ModelNotFoundError(
                f"{model_name} has no {ALIAS_CHALLENGER!r} version to deploy; train one "
                f"(mlops train --model-name {model_name}) or pass version="
            )
        version = str(challenger.version)
    return str(get_version(client, model_name, version).version)


def policy_of(settings: Settings, params: Mapping[str, Any]) -> BlueGreenPolicy:
    """The prod rollout's policy: settings.rollout with the pipeline's policy parameters."""

    def given(name: str) -> Any:
        value = params.get(name)
        return None if value in ("", "None") else value

    return settings.rollout.policy(**{name: given(name) for name in _POLICY_PARAMS})


def rolled_back_message(result: RolloutResult) -> str:
    """What a rolled-back prod rollout fails with: why, and where its record is."""
    from mlops.tracking import deployments_experiment

    where = (
        f"MLflow experiment {deployments_experiment(result.model_name)!r}, "
        f"run {result.record_run_id}"
    )
    return (
        f"rollout of {result.model_name} v{result.green_version} to {result.endpoint} rolled "
        f"back: {result.reason}; champion unchanged (record: {where})"
    )


def record_approval(
    settings: Settings, run_id: str, model_name: str, version: str, *, require: bool = True
) -> ApprovalResult:
    """The registry's decision on ``version``, logged to the pipeline run as its result.

    Raises:
        ApprovalError: ``require`` and the version is not approved (how to approve it).
    """
    from mlops.registry import get_version
    from mlops.stages import save_result
    from mlops.tracking import Tags, connect

    client = connect(settings)
    tags = get_version(client, model_name, version).tags
    state = tags.get(Tags.APPROVAL, "none")
    result = ApprovalResult(
        model_name=model_name,
        version=version,
        state=state,
        approver=tags.get(Tags.APPROVED_BY),
        approved_at=tags.get(Tags.APPROVED_AT),
        comment=tags.get(Tags.APPROVAL_COMMENT, ""),
    )
    if run_id:
        save_result(client, run_id, "approval", result)
    if require and state != "approved":
        raise ApprovalError(
            f"version {version} of {model_name} is not approved ({Tags.APPROVAL}={state} in "
            f"the model registry); approve it with `mlops approve {model_name} {version}` "
            "and run again"
        )
    return result


# --- the steps: each takes the earlier results by the names of the steps that gave them ---


def _tags(context: StepContext) -> dict[str, str]:
    """Tags for the records a step logs: the pipeline run, and the Prefect flow run that
    opened it (when one did)."""
    from mlops.tracking import Tags, connect

    tags = {PIPELINE_RUN_TAG: context.run_id}
    flow_run = (
        connect(context.settings).get_run(context.run_id).data.tags.get(Tags.PREFECT_FLOW_RUN_ID)
    )
    if flow_run:
        tags[Tags.PREFECT_FLOW_RUN_ID] = flow_run
    return tags


def _save(context: StepContext, name: str, result: BaseModel) -> None:
    from mlops.stages import save_result
    from mlops.tracking import connect

    save_result(connect(context.settings), context.run_id, name, result)


def _deploy_dev(context: StepContext) -> RolloutResult:
    from mlops.stages.deploy import deploy_dev
    from mlops.tracking import Tags, connect

    version = resolve_version(context.settings, context.model_name, context.param("version"))
    connect(context.settings).set_tag(context.run_id, Tags.MODEL_VERSION, version)
    result = deploy_dev(context.settings, context.model_name, version, tags=_tags(context))
    _save(context, "deploy_dev", result)
    return result


def _evaluate_endpoint(context: StepContext, deploy_dev: RolloutResult) -> EndpointEvaluation:
    from mlops.stages.deploy import evaluate_on_endpoint

    evaluation = evaluate_on_endpoint(
        context.settings,
        context.model_name,
        deploy_dev.green_version,
        endpoint=deploy_dev.endpoint,
        tags=_tags(context),
    )
    _save(context, "evaluate_endpoint", evaluation)
    return evaluation


def _approval(
    context: StepContext, deploy_dev: RolloutResult, evaluate_endpoint: EndpointEvaluation
) -> ApprovalResult:
    return record_approval(
        context.settings, context.run_id, context.model_name, deploy_dev.green_version
    )


def _rollout_prod(
    context: StepContext, deploy_dev: RolloutResult, approval: ApprovalResult
) -> RolloutResult:
    from mlops.stages.deploy import deploy_prod

    result = deploy_prod(
        context.settings,
        context.model_name,
        approval.version,
        policy=policy_of(context.settings, context.params),
        tags=_tags(context),
    )
    _save(context, "rollout_prod", result)
    if not result.completed:  # the record says why; the pipeline failed
        raise RolloutError(rolled_back_message(result))
    return result


def open_deployment_run(settings: Settings, model_name: str, tags: dict[str, str]) -> str:
    """Open the pipeline's run in ``<model>/deployments``."""
    from mlops.tracking import Tags, connect, deployments_experiment, start_run

    return start_run(
        connect(settings),
        settings,
        experiment=deployments_experiment(model_name),
        run_name=f"deploy {model_name}",
        tags={Tags.STAGE: PIPELINE_STAGE, Tags.MODEL_NAME: model_name, **tags},
    )


def close_deployment_run(settings: Settings, run_id: str, failed: bool) -> None:
    """Mark the pipeline's run finished or failed."""
    from mlops.tracking import connect, finish_run

    finish_run(connect(settings), run_id, failed=failed)


def _check(settings: Settings, model_name: str, params: Mapping[str, Any]) -> None:
    from mlops.stages.train import validate_model_name

    validate_model_name(model_name)
    policy_of(settings, params)  # a wrong routing or wait fails before any endpoint starts


DEPLOYMENT = Pipeline(
    name="deployment",
    flow_name="deployment-pipeline",
    description=(
        "Ship a registered version: dev endpoint, evaluation through it on the test split, "
        "approval in the central registry, blue/green rollout to the prod endpoint with "
        "auto-rollback; the version becomes champion."
    ),
    params=(
        Param("version", "str", None, "version to ship (default: the challenger)"),
        Param("traffic_routing", "str", None, "ALL_AT_ONCE, CANARY or LINEAR"),
        Param("canary_size", "float", None, "percent of traffic on green in the canary step"),
        Param("linear_step", "float", None, "percent per LINEAR step"),
        Param("wait_interval_s", "float", None, "bake seconds after each traffic shift"),
        Param("termination_wait_s", "float", None, "seconds before blue is retired"),
    ),
    steps=(
        Step("deploy_dev", _deploy_dev, (), RolloutResult, "never", ("version",),
             "put the version on the dev endpoint"),
        Step("evaluate_endpoint", _evaluate_endpoint, ("deploy_dev",), EndpointEvaluation,
             "never", (), "score the test split through the dev endpoint"),
        Step("approval", _approval, ("deploy_dev", "evaluate_endpoint"), ApprovalResult,
             "never", (), "the version must be approved in the central registry"),
        Step("rollout_prod", _rollout_prod, ("deploy_dev", "approval"), RolloutResult, "never",
             _POLICY_PARAMS, "blue/green rollout to the prod endpoint; champion when done"),
    ),
    open_run=open_deployment_run,
    close_run=close_deployment_run,
    check=_check,
)  # fmt: skip
