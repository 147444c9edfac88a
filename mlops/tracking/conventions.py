"""Names shared by every stage: experiments, aliases and tags (see DESIGN.md)."""

from __future__ import annotations

__all__ = [
    "ALIAS_CHALLENGER",
    "ALIAS_CHAMPION",
    "Tags",
    "deployments_experiment",
    "monitoring_experiment",
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
    BACKEND = "mlops.backend"
    GATE = "mlops.gate"
    GATE_REASON = "mlops.gate_reason"
    FINGERPRINT = "mlops.fingerprint"
    TRAINING_RUN_ID = "mlops.training_run_id"
    BASELINE_URI = "mlops.baseline_uri"
    APPROVAL = "mlops.approval"
    APPROVED_BY = "mlops.approved_by"
    APPROVED_AT = "mlops.approved_at"
    APPROVAL_COMMENT = "mlops.approval_comment"


def training_experiment(model_name: str) -> str:
    """Experiment of the training runs of ``model_name``."""
    return model_name


def deployments_experiment(model_name: str) -> str:
    """Experiment of the rollout records of ``model_name``."""
    return f"{model_name}/deployments"


def monitoring_experiment(model_name: str) -> str:
    """Experiment of the monitoring runs of ``model_name``."""
    return f"{model_name}/monitoring"
