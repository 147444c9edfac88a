"""One typed settings object, loaded once at the entry point and passed down.

Sources, highest priority first:

1. arguments given to :func:`load_settings` (the CLI's flags),
2. ``MLOPS_*`` environment variables (nested with ``__``: ``MLOPS_TRAINING__MAX_DEPTH=8``),
3. the tools' own variables where a user expects them: ``MLFLOW_TRACKING_URI``,
   ``AWS_REGION``/``AWS_DEFAULT_REGION``,
4. the project file (``mlops.toml`` in the working directory, or the path in ``MLOPS_CONFIG``),
5. embedded defaults: SQLite MLflow store under ``.mlops/``, local backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from mlops.errors import ConfigError
from mlops.masking import mask_secrets, mask_uri
from mlops.policy import PolicyFields
from mlops.types import parse_duration

__all__ = [
    "AwsSettings",
    "BaselineSettings",
    "BatchSettings",
    "GateSettings",
    "MonitoringSettings",
    "NotificationSettings",
    "RetrainingSettings",
    "RolloutSettings",
    "Settings",
    "SplitSettings",
    "Threshold",
    "TrainingSettings",
    "load_settings",
    "mask_uri",
    "masked_settings",
]

DEFAULT_PROJECT_FILE = "mlops.toml"


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


class GateSettings(_Section):
    """The quality gate between evaluation and registration."""

    thresholds: dict[str, Threshold] = Field(
        default_factory=dict,
        description="metric -> bound; when empty the task's defaults apply "
        "(regression r2>=0.5, binary auc>=0.7, multiclass accuracy>=0.7)",
    )
    champion_margin: float = Field(
        0.05,
        ge=0,
        description="the challenger may be worse than the current champion on the primary "
        "metric by at most this fraction",
    )


class BaselineSettings(_Section):
    """The monitoring baseline made at training time."""

    sample_rows: int = Field(5000, ge=10)


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


class RolloutSettings(PolicyFields):
    """The ``[rollout]`` table: the blue/green policy's fields (flat keys such as
    ``traffic_routing`` and ``wait_interval_s`` or a ``routing`` table, and ``alarms``) and the
    endpoints' names. ``settings.rollout.policy(**options)`` is the policy of a rollout."""

    dev_endpoint: str = Field("{model}-dev", description="name template of the dev endpoint")
    prod_endpoint: str = Field("{model}-prod", description="name template of the prod endpoint")


class Settings(BaseSettings):
    """Effective settings of one mlops invocation."""

    model_config = SettingsConfigDict(
        env_prefix="MLOPS_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
        populate_by_name=True,  # `tracking_uri = ...` in mlops.toml and Settings(tracking_uri=)
    )

    work_dir: Path = Field(Path(".mlops"), description="local state: MLflow store, jobs, data")
    tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("MLOPS_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking URI; default sqlite:///<work_dir>/mlflow.db",
    )
    registry_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("MLOPS_REGISTRY_URI", "MLFLOW_REGISTRY_URI"),
    )
    backend: Literal["local", "sagemaker"] = "local"
    seed: int = 42
    split: SplitSettings = Field(default_factory=SplitSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    baseline: BaselineSettings = Field(default_factory=BaselineSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    retraining: RetrainingSettings = Field(default_factory=RetrainingSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)

    @field_serializer("tracking_uri", "registry_uri", when_used="json")
    def _mask_uri_passwords(self, uri: str | None) -> str | None:
        # JSON dumps end up in places people read (Prefect stores flow parameters): never
        # let a store password travel with them.
        return mask_uri(uri)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        project_file = os.environ.get("MLOPS_CONFIG", DEFAULT_PROJECT_FILE)
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=project_file),
        )

    @property
    def effective_tracking_uri(self) -> str:
        """The MLflow tracking URI in force."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.work_dir / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> str:
        """Where new experiments of a local store keep their artifacts."""
        return (self.work_dir / "mlartifacts").resolve().as_uri()

    @property
    def capture_destination(self) -> str:
        """Where data capture goes: the configured folder or S3 URI, else ``<work_dir>/capture``."""
        return self.serving.capture.destination or str((self.work_dir / "capture").resolve())

    @property
    def evidently_workspace(self) -> Path:
        """The local Evidently workspace: the configured folder, else ``<work_dir>/evidently``."""
        return (self.monitoring.workspace or (self.work_dir / "evidently")).resolve()

    @property
    def endpoints_dir(self) -> Path:
        """Where local endpoints keep their state (one folder per endpoint)."""
        return (self.work_dir / "endpoints").resolve()

    @property
    def effective_aws_region(self) -> str | None:
        """The AWS region: environment (``MLOPS_AWS__REGION``, then boto3's ``AWS_REGION`` and
        ``AWS_DEFAULT_REGION``) over the project file, as for every other setting."""
        for name in ("MLOPS_AWS__REGION", "AWS_REGION", "AWS_DEFAULT_REGION"):
            if os.environ.get(name):
                return os.environ[name]
        return self.aws.region


def load_settings(**overrides: Any) -> Settings:
    """Load settings from every source; raise :class:`ConfigError` naming the bad field.

    Args:
        **overrides: highest-priority values, e.g. from CLI flags (``None`` values are ignored).
    """
    project_file = Path(os.environ.get("MLOPS_CONFIG", DEFAULT_PROJECT_FILE))
    if "MLOPS_CONFIG" in os.environ and not project_file.is_file():
        raise ConfigError(
            f"MLOPS_CONFIG points to {project_file}, which does not exist; "
            "create it or unset MLOPS_CONFIG to use mlops.toml in the working directory"
        )
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid settings ({problems}); fix them in {project_file} or in the MLOPS_* "
            "environment variables (see `mlops config show`)"
        ) from None
    except SettingsError as exc:  # e.g. a list or table variable that is not valid JSON
        raise ConfigError(
            f"invalid settings ({exc}); list and table values in MLOPS_* variables must be "
            "JSON, e.g. MLOPS_NOTIFICATIONS__APPRISE_URLS='[\"slack://...\"]'"
        ) from None
    except Exception as exc:  # a malformed TOML file
        if "toml" in type(exc).__module__.lower() or "TOML" in str(exc):
            raise ConfigError(f"cannot parse {project_file}: {exc}; fix the TOML syntax") from None
        raise


def masked_settings(settings: Settings) -> dict[str, Any]:
    """Effective settings as plain data with every secret masked, for display."""
    data = settings.model_dump(mode="json")
    data["tracking_uri"] = mask_uri(settings.effective_tracking_uri)
    data["registry_uri"] = mask_uri(settings.registry_uri)
    data["work_dir"] = str(settings.work_dir.resolve())
    data["notifications"]["apprise_urls"] = ["****" for _ in settings.notifications.apprise_urls]
    data["aws"]["region"] = settings.effective_aws_region
    key = os.environ.get("AWS_ACCESS_KEY_ID")
    data["aws"]["access_key_id"] = (key[:4] + "****") if key else None
    data["aws"]["secret_access_key"] = "****" if os.environ.get("AWS_SECRET_ACCESS_KEY") else None
    data["prefect_api_url"] = mask_uri(os.environ.get("PREFECT_API_URL")) or "(ephemeral/local)"
    data["project_file"] = os.environ.get("MLOPS_CONFIG", DEFAULT_PROJECT_FILE)
    # Any other URI (an S3 endpoint, a capture destination, a data source) may carry one too.
    return mask_secrets(data)
