"""Names shared by every stage: experiments, aliases and tags (see DESIGN.md)."""

from __future__ import annotations

__all__ = [
    "ALIAS_CHALLENGER",
    "ALIAS_CHAMPION",
    "EXPERIMENT_KIND_TRAINING",
    "Events",
    "Stages",
    "Tags",
    "batch_experiment",
    "deployments_experiment",
    "experiment_description",
    "model_resource_id",
    "monitoring_experiment",
    "promotion_tags",
    "training_experiment",
]

ALIAS_CHALLENGER = "challenger"
ALIAS_CHAMPION = "champion"


class Tags:
    """Tag keys on runs and model versions."""

    STAGE = "mlops.stage"
    MODEL_NAME = "mlops.model_name"
    PREFECT_FLOW_RUN_ID = "mlops.prefect.flow_run_id"
    TASK = "mlops.task"
    TASK_INFERRED = "mlops.task_inferred"
    TARGET = "mlops.target"
    DATA_SOURCE = "mlops.data_source"
    DATA_DIGEST = "mlops.data_digest"
    PREPARED_URI = "mlops.prepared_uri"
    TRAINING_JOB = "mlops.training_job"
    TRAINING_JOB_ARN = "mlops.training_job_arn"  # SageMaker backend
    # the code that trained a model (mlops.code_version): the digest of the package's
    # sources is in the fingerprint; the commit is MLflow's own tag, shown in the UI
    CODE_DIGEST = "mlops.code.digest"
    CODE_DIRTY = "mlops.code.uncommitted_changes"
    GIT_COMMIT = "mlflow.source.git.commit"
    BACKEND = "mlops.backend"
    GATE = "mlops.gate"
    GATE_REASON = "mlops.gate_reason"
    FINGERPRINT = "mlops.fingerprint"
    TRAINING_RUN_ID = "mlops.training_run_id"
    # the training run's artifact root, absolute: what another environment reads it by
    TRAINING_ARTIFACTS = "mlops.training_artifacts_uri"
    BASELINE_URI = "mlops.baseline_uri"
    APPROVAL = "mlops.approval"
    APPROVED_BY = "mlops.approved_by"
    APPROVED_AT = "mlops.approved_at"
    APPROVAL_COMMENT = "mlops.approval_comment"
    REGISTERED_AS = "mlops.registered_as"
    # MLflow's own: the markdown description of a run or an experiment, and the kind of an
    # experiment (which view the UI opens it in)
    NOTE = "mlflow.note.content"
    EXPERIMENT_KIND = "mlflow.experimentKind"
    # model versions: where they serve and which runs touched them
    DEPLOYMENT = "mlops.deployment"  # live (the prod champion) | retired (replaced in prod)
    DEPLOYED_AT = "mlops.deployed_at"
    DEPLOYMENT_ENDPOINT = "mlops.deployment.endpoint"
    DEPLOYMENT_RUN_ID = "mlops.deployment.run_id"  # the rollout that made it live
    RETIRED_AT = "mlops.deployment.retired_at"
    RETIRED_BY = "mlops.deployment.retired_by"  # the rollout run (or endpoint) that replaced it
    REPLACED_BY = "mlops.deployment.replaced_by"  # the version that replaced it
    ROLLOUT_RUN_IDS = "mlops.rollout.run_ids"  # every rollout of the version, oldest first
    LAST_ROLLOUT_RUN_ID = "mlops.rollout.last_run_id"
    LAST_ROLLOUT_OUTCOME = "mlops.rollout.last_outcome"
    ENDPOINT_EVALUATION_RUN_ID = "mlops.endpoint_evaluation.run_id"
    LAST_MONITORING_RUN_ID = "mlops.monitoring.last_run_id"
    LAST_MONITORING_STATUS = "mlops.monitoring.last_status"
    # monitoring runs
    ENDPOINT = "mlops.endpoint"
    VARIANT = "mlops.variant"
    MODEL_VERSION = "mlops.model_version"
    WINDOW_START = "mlops.window_start"
    WINDOW_END = "mlops.window_end"
    DRIFT_DETECTED = "mlops.drift.detected"
    DRIFTED_FEATURES = "mlops.drift.features"
    ACCURACY_DROP = "mlops.accuracy.drop_detected"
    MONITOR_STATUS = "mlops.monitor.status"
    # batch runs
    BATCH_INPUT = "mlops.batch.input"
    BATCH_OUTPUT = "mlops.batch.output"
    BATCH_OUTCOME = "mlops.batch.outcome"
    # rollout records and endpoint evaluations (<model>/deployments)
    ENDPOINT_EVALUATION = "mlops.endpoint_evaluation"  # passed | failed
    ROLLOUT_OUTCOME = "mlops.rollout.outcome"  # running, completed, rolled_back, interrupted
    ROLLOUT_REASON = "mlops.rollout.reason"
    ROLLOUT_ALARM = "mlops.rollout.alarm"
    ROLLOUT_STEPS = "mlops.rollout.steps"
    ROLLOUT_STEP = "mlops.rollout.step"  # the step it is in (the last one, once ended)
    ROLLOUT_RECOVERY = "mlops.rollout.recovery"  # interrupted, then: rolled_back or resumed
    ROLLOUT_RESUMED_FROM = "mlops.rollout.resumed_from"
    ROLLOUT_RESUMED_BY = "mlops.rollout.resumed_by"
    # promotion of a version to an environment (`mlops promote`): see promotion_tags()
    PROMOTED_PREFIX = "mlops.promoted."
    # registered model: retraining cooldown (survives restarts)
    LAST_RETRAINING_AT = "mlops.retraining.last_started_at"
    LAST_RETRAINING_REASON = "mlops.retraining.last_reason"
    DATA_WATCH_DIGEST = "mlops.data_watch.digest"


class Stages:
    """Values of the ``mlops.stage`` run tag: what a run is."""

    TRAINING = "training"
    ROLLOUT = "rollout"
    ENDPOINT_EVALUATION = "endpoint-evaluation"
    MONITORING = "monitoring"


# MLflow 3 opens an experiment in its GenAI view unless told it holds model training
# (the UI's ExperimentKind.CUSTOM_MODEL_DEVELOPMENT).
EXPERIMENT_KIND_TRAINING = "custom_model_development"


class Events:
    """Prefect event names; the resource is ``mlops.model.<name>`` (see DESIGN.md)."""

    DRIFT_DETECTED = "mlops.drift.detected"
    DATA_UPDATED = "mlops.data.updated"
    MODEL_APPROVED = "mlops.model.approved"
    APPROVAL_REQUESTED = "mlops.approval.requested"
    ROLLOUT_COMPLETED = "mlops.rollout.completed"
    ROLLOUT_ROLLED_BACK = "mlops.rollout.rolled_back"


def promotion_tags(environment: str) -> tuple[str, str]:
    """Version tags recording who promoted it to ``environment`` and when
    (``mlops.promoted.<environment>.by``, ``mlops.promoted.<environment>.at``)."""
    return f"{Tags.PROMOTED_PREFIX}{environment}.by", f"{Tags.PROMOTED_PREFIX}{environment}.at"


def model_resource_id(model_name: str) -> str:
    """Prefect resource id of events about ``model_name``."""
    return f"mlops.model.{model_name}"


def training_experiment(model_name: str) -> str:
    """Experiment of the training runs of ``model_name``."""
    return model_name


def deployments_experiment(model_name: str) -> str:
    """Experiment of the rollout records of ``model_name``."""
    return f"{model_name}/deployments"


def monitoring_experiment(model_name: str) -> str:
    """Experiment of the monitoring runs of ``model_name``."""
    return f"{model_name}/monitoring"


def batch_experiment(model_name: str) -> str:
    """Experiment of the batch-inference runs of ``model_name``."""
    return f"{model_name}/batch"


def experiment_description(name: str) -> str:
    """The description (markdown) of one of our experiments, from its name."""
    for suffix, text in (
        (
            "/deployments",
            "Rollout records (one run per rollout onto an endpoint: steps, "
            "alarms, outcome) and endpoint evaluations",
        ),
        (
            "/monitoring",
            "Monitoring runs: drift, constraint violations, service health and "
            "accuracy of each served version, one run per version and window",
        ),
        ("/batch", "Batch-inference runs: input, output and checks of each batch"),
    ):
        if name.endswith(suffix):
            model = name.removesuffix(suffix)
            return f"{text} of model **{model}**. Created by mlops."
    return (
        f"Training runs of model **{name}**: prepare, train, evaluate (quality gate), baseline "
        f"and register; each run's model, curves, test metrics and baseline. Created by mlops."
    )
