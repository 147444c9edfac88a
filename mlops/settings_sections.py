"""The tables of the settings (``[training]``, ``[gate]``, ``[sagemaker]``, ``[serving]``...).

Each section is a pydantic model that rejects unknown keys; :class:`mlops.settings.Settings`
holds one of each and loads them from the project file and the environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from mlops.policy import PolicyFields
from mlops.types import parse_duration

__all__ = [
    "AutoscalingSettings",
    "AwsSettings",
    "BaselineSettings",
    "BatchSettings",
    "CaptureSettings",
    "GateSettings",
    "MonitoringSettings",
    "NotificationSettings",
    "RetrainingSettings",
    "RolloutSettings",
    "SageMakerSettings",
    "ServingSettings",
    "SplitSettings",
    "TaskGateSettings",
    "Threshold",
    "TrainingSettings",
]


class _Section(BaseModel):
    """A table of the settings: a misspelt key is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class SplitSettings(_Section):
    """Fractions of the prepared table for each split (the safe-deployment pipeline's 80/15/5)."""

    train: float = Field(0.80, gt=0, lt=1)
    validation: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.05, gt=0, lt=1)

    @field_validator("test")
    @classmethod
    def _sum_to_one(cls, test: float, info: Any) -> float:
        total = info.data.get("train", 0.8) + info.data.get("validation", 0.15) + test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"split fractions must add up to 1, got {total:.4f}; "
                "set [split] train, validation and test so that they do"
            )
        return test


class TrainingSettings(_Section):
    """XGBoost hyperparameters (names as in XGBoost's sklearn API) and early stopping."""

    n_estimators: int = Field(300, ge=1, le=100_000)
    max_depth: int = Field(6, ge=1, le=64)
    learning_rate: float = Field(0.1, gt=0, le=1)
    subsample: float = Field(0.9, gt=0, le=1)
    colsample_bytree: float = Field(0.9, gt=0, le=1)
    min_child_weight: float = Field(1.0, ge=0)
    reg_lambda: float = Field(1.0, ge=0)
    early_stopping_rounds: int = Field(20, ge=1)
    tree_method: Literal["hist", "approx", "exact"] = "hist"
    n_jobs: int = Field(0, ge=0, description="threads for XGBoost; 0 means all cores")
    extra: dict[str, Any] = Field(default_factory=dict, description="other XGBoost parameters")

    def hyperparameters(self) -> dict[str, Any]:
        """The flat hyperparameter dict passed to the training job."""
        params = self.model_dump(exclude={"extra"})
        params.update(self.extra)
        return params


class Threshold(_Section):
    """An absolute bound on one evaluation metric."""

    min: float | None = None
    max: float | None = None


class TaskGateSettings(_Section):
    """Thresholds of one task (``[gate.regression.thresholds.r2]``) or one model
    (``[gate.models.taxi.thresholds.rmse]``)."""

    thresholds: dict[str, Threshold] = Field(default_factory=dict, description="metric -> bound")


class GateSettings(_Section):
    """The quality gate between evaluation and registration.

    The thresholds of a training are layered, later layers winning bound by bound: the
    project-wide ``thresholds`` whose metric the task produces, then the task's table
    (``[gate.regression]``, ``[gate.binary]``, ``[gate.multiclass]``), then the model's
    (``[gate.models.<name>]``), then ``mlops train --gate`` for one run. When none of them
    sets a threshold, the task's defaults apply.
    """

    thresholds: dict[str, Threshold] = Field(
        default_factory=dict,
        description="project-wide metric -> bound, applied to the tasks that produce the "
        "metric; when no threshold applies the task's defaults do "
        "(regression r2>=0.5, binary auc>=0.7, multiclass accuracy>=0.7)",
    )
    champion_margin: float = Field(
        0.05,
        ge=0,
        description="the challenger may be worse than the current champion on the primary "
        "metric by at most this fraction",
    )
    regression: TaskGateSettings = Field(default_factory=TaskGateSettings)
    binary: TaskGateSettings = Field(default_factory=TaskGateSettings)
    multiclass: TaskGateSettings = Field(default_factory=TaskGateSettings)
    models: dict[str, TaskGateSettings] = Field(
        default_factory=dict, description="model name -> its thresholds"
    )
    overrides: dict[str, Threshold] = Field(
        default_factory=dict,
        description="thresholds of one run, set by `mlops train --gate METRIC>=VALUE`",
    )


class BaselineSettings(_Section):
    """The monitoring baseline made at training time."""

    sample_rows: int = Field(5000, ge=10)
    processing_job: bool = Field(
        False,
        description="make the baseline in a processing job of the backend (a SageMaker "
        "processing job on the project image), for training data too big for this machine",
    )


class NotificationSettings(_Section):
    """Where notifications go (failures, drift, rollbacks, approval requests, probe alarms):
    a log line by default, Apprise URLs (webhook, e-mail, SNS, Slack...) or a Prefect
    notification block."""

    channel: Literal["log", "apprise", "prefect-block"] = "log"
    apprise_urls: list[SecretStr] = Field(default_factory=list)
    prefect_block: str | None = Field(None, description="name of a Prefect notification block")


class MonitoringSettings(_Section):
    """The monitor of captured traffic: drift, constraints, health and accuracy."""

    window: str = Field("1h", description="default window of `mlops monitor` (e.g. 15m, 1h, 1d)")
    drift_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="dataset drift when at least this share of columns drifted "
        "(Evidently's DataDriftPreset default)",
    )
    report_sample_rows: int = Field(
        10_000,
        ge=100,
        description="the Evidently HTML/JSON report is built on at most this many rows of the "
        "window (decisions always use every row)",
    )
    max_accuracy_drop: float = Field(
        0.1,
        ge=0,
        le=1,
        description="accuracy drift when the primary metric is worse than the version's test "
        "metric by more than this fraction",
    )
    min_rows: int = Field(
        30, ge=1, description="fewer captured rows than this: report, but decide nothing"
    )
    processing_job: bool = Field(
        False,
        description="run the monitor as a processing job of the backend (a SageMaker "
        "processing job on the project image), for windows too big for this machine",
    )
    workspace: Path | None = Field(
        None,
        description="local Evidently workspace (one project per model); default "
        "<work_dir>/evidently",
    )

    @field_validator("window")
    @classmethod
    def _window_is_duration(cls, value: str) -> str:
        parse_duration(value, "monitoring.window")
        return value


class BatchSettings(_Section):
    """Batch inference: the input is checked against the baseline before anything is written."""

    chunk_rows: int = Field(100_000, ge=1, description="rows predicted per chunk")
    check_drift: bool = True
    max_outlier_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description="fail when more than this share of rows has a value far outside the "
        "baseline range",
    )
    outlier_margin: float = Field(
        0.5,
        ge=0,
        description="a value is an outlier when it lies beyond the baseline's [min, max] by "
        "more than this fraction of the range",
    )
    runner: Literal["auto", "local", "transform"] = Field(
        "auto",
        description='where predictions run: "local" (this process), "transform" (a batch '
        'transform job of the backend) or "auto" (a transform job when backend = "sagemaker" '
        "and the input is at least transform_min_mb)",
    )
    transform_min_mb: float = Field(
        256.0, ge=0, description='"auto": inputs this large or larger run as a transform job'
    )


class RetrainingSettings(_Section):
    """Retraining on drift (`mlops.drift.detected`) and on new data (`mlops.data.updated`)."""

    cooldown: str = Field(
        "6h",
        description="after a retraining starts, further drift events for the same model are "
        "ignored for this long (recorded on the registered model; survives restarts)",
    )
    dataset: str | None = Field("taxi", description="built-in training source, or use data")
    data: str | None = Field(None, description="training source path or s3:// URI")
    target: str | None = Field(None, description="target column of data")
    task: Literal["regression", "binary", "multiclass"] | None = None
    rows: int | None = Field(None, ge=1, description="rows of a built-in dataset")
    include_labelled_capture: bool = Field(
        True, description="add captured requests joined with ground truth to the training data"
    )

    @field_validator("cooldown")
    @classmethod
    def _cooldown_is_duration(cls, value: str) -> str:
        parse_duration(value, "retraining.cooldown")
        return value


class AwsSettings(_Section):
    """AWS access for S3 data and the SageMaker backend; boto3 reads AWS_* itself."""

    region: str | None = None
    endpoint_url: str | None = Field(None, description="custom endpoint, e.g. moto on loopback")
    role_arn: str | None = None
    bucket: str | None = None
    retry_mode: Literal["standard", "adaptive"] = Field(
        "standard",
        description="botocore's retry mode for throttling and 5xx: standard (backoff) or "
        "adaptive (backoff and client-side rate limiting)",
    )
    max_attempts: int = Field(
        8, ge=1, le=20, description="tries of one AWS call, the first included"
    )

    def client_config(self, **options: Any) -> Any:
        """A ``botocore.config.Config`` with this retry mode and attempts (and ``options``)."""
        from botocore.config import Config

        retries = {"mode": self.retry_mode, "total_max_attempts": self.max_attempts}
        return Config(retries=retries, **options)


_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+[a-z0-9-]*\.[a-z0-9]+$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_BUCKET = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class SageMakerSettings(_Section):
    """The SageMaker backend (``backend = "sagemaker"``): where jobs put their files, which
    image they run, on what fleet. ``role_arn`` and ``bucket`` fall back to ``[aws]``'s."""

    role_arn: str | None = Field(None, description="execution role of the jobs (IAM role ARN)")
    bucket: str | None = Field(None, description="S3 bucket for job inputs and outputs")
    prefix: str = Field("mlops", description="key prefix: s3://bucket/prefix/<job>/...")
    training_image: str = Field(
        "project",
        description='"project" (image_uri, built from deployments/), "builtin-xgboost" '
        "(needs the sagemaker SDK for its URI) or an image URI",
    )
    image_uri: str | None = Field(
        None, description="the project's image in ECR (deployments/Dockerfile)"
    )
    framework_version: str = Field(
        "3.0-5", description="version of the built-in XGBoost (2.0 or later: 3.0-5, 3.2-0)"
    )
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = Field(1, ge=1, le=100)
    max_runtime_s: int = Field(24 * 3600, ge=60, le=28 * 24 * 3600)
    use_spot: bool = Field(False, description="managed spot training")
    max_wait_s: int | None = Field(
        None, ge=60, description="spot: the most to wait and run (default 2x max_runtime_s)"
    )
    checkpoint_s3_uri: str | None = Field(None, description="spot: s3:// for checkpoints")
    volume_size_gb: int = Field(30, ge=1, le=16384)
    processing_instance_type: str = "ml.m5.xlarge"
    transform_instance_type: str = "ml.m5.xlarge"
    endpoint_instance_type: str = Field("ml.m5.large", description="instances of endpoints")
    endpoint_instance_count: int = Field(1, ge=1, le=100)
    dashboard: bool = Field(True, description="a CloudWatch dashboard per model")
    probe_min_success: float = Field(
        0.9, ge=0, le=1, description="alarm when the synthetic probe's success rate is below"
    )
    poll_s: float = Field(30.0, gt=0, le=600, description="seconds between job status checks")

    @field_validator(
        "instance_type",
        "processing_instance_type",
        "transform_instance_type",
        "endpoint_instance_type",
    )
    @classmethod
    def _instance_type(cls, value: str) -> str:
        if not _INSTANCE_TYPE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a SageMaker instance type; write it as ml.<family>.<size>, "
                "e.g. ml.m5.xlarge"
            )
        return value

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_ARN.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an IAM role ARN; write arn:aws:iam::<account>:role/<name>"
            )
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        if value is not None and not _BUCKET.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid S3 bucket name; use 3-63 lowercase letters, digits, "
                "'.' or '-', starting and ending with a letter or digit (no s3:// prefix)"
            )
        return value

    @field_validator("checkpoint_s3_uri")
    @classmethod
    def _checkpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("s3://"):
            raise ValueError(f"{value!r} is not an s3:// URI; checkpoints go to S3")
        return value


class CaptureSettings(_Section):
    """Data capture of served traffic, in SageMaker's JSON-lines format and path layout."""

    enabled: bool = True
    destination: str | None = Field(
        None, description="folder or s3:// URI; default <work_dir>/capture"
    )
    sampling_percentage: int = Field(100, ge=0, le=100)
    csv_content_types: list[str] = Field(default_factory=lambda: ["text/csv"])
    json_content_types: list[str] = Field(default_factory=lambda: ["application/json"])
    flush_interval_s: float = Field(1.0, gt=0, le=60)


class ServingSettings(_Section):
    """The model server (SageMaker inference contract) and local endpoints."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int | None = Field(
        None, ge=1, description="default: SAGEMAKER_MODEL_SERVER_WORKERS, else one per core"
    )
    max_payload_mb: float = Field(6.0, gt=0)
    capture: CaptureSettings = Field(default_factory=CaptureSettings)
    metrics_period_s: int = Field(
        60,
        ge=1,
        le=3600,
        description="period of a local endpoint's metric records (CloudWatch's minute); "
        "shorter only in tests",
    )
    metrics_flush_s: float = Field(
        5.0, gt=0, le=60, description="how often a gateway appends its closed metric records"
    )
    max_header_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="request line and headers of one request; larger ones get 431 and the "
        "connection is closed",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="time to receive a request's line and headers (from its first byte, or "
        "from the connection); then 408 and the connection is closed",
    )
    request_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="time to receive a whole request, headers and body; then 408 and the "
        "connection is closed",
    )
    keep_alive_s: int = Field(
        5, ge=1, le=3600, description="an idle kept-alive connection is closed after this"
    )
    max_connections: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="connections (and requests in flight) one worker serves at once; a "
        "request on a connection beyond them gets 503 and the connection is closed",
    )


class AutoscalingSettings(_Section):
    """Target tracking on invocations per instance (Application Auto Scaling on SageMaker; a
    scaling loop in the local gateway), between ``min_instances`` and ``max_instances``."""

    enabled: bool = False
    min_instances: int = Field(1, ge=1, le=100)
    max_instances: int = Field(4, ge=1, le=100)
    target_invocations_per_instance: float = Field(
        600.0,
        gt=0,
        description="invocations per instance per minute the scaler aims for "
        "(SageMakerVariantInvocationsPerInstance)",
    )
    scale_out_cooldown_s: int = Field(60, ge=0, le=86_400)
    scale_in_cooldown_s: int = Field(300, ge=0, le=86_400)
    evaluation_period_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="local gateway only: how often its scaling loop runs and the window of "
        "invocations it counts (CloudWatch's minute); shorter only in tests",
    )

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSettings:
        if self.max_instances < self.min_instances:
            raise ValueError(
                f"max_instances={self.max_instances} is below min_instances="
                f"{self.min_instances}; set max_instances to at least min_instances"
            )
        return self


class RolloutSettings(PolicyFields):
    """The ``[rollout]`` table: the blue/green policy's fields (flat keys such as
    ``traffic_routing`` and ``wait_interval_s`` or a ``routing`` table, and ``alarms``) and the
    endpoints' names. ``settings.rollout.policy(**options)`` is the policy of a rollout."""

    dev_endpoint: str = Field("{model}-dev", description="name template of the dev endpoint")
    prod_endpoint: str = Field("{model}-prod", description="name template of the prod endpoint")
