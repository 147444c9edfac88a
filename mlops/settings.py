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

from pydantic import AliasChoices, Field, ValidationError, field_serializer
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from mlops.errors import ConfigError
from mlops.masking import mask_secrets, mask_uri
from mlops.profiles import apply_profile
from mlops.settings_sections import (
    AutoscalingSettings,
    AwsSettings,
    BaselineSettings,
    BatchSettings,
    GateSettings,
    MonitoringSettings,
    NotificationSettings,
    RetrainingSettings,
    RolloutSettings,
    SageMakerSettings,
    ServingSettings,
    SplitSettings,
    TrainingSettings,
)

__all__ = [
    "DEFAULT_PROJECT_FILE",
    "Settings",
    "check_store_driver",
    "load_settings",
    "masked_settings",
]

DEFAULT_PROJECT_FILE = "mlops.toml"


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
        description="MLflow model registry URI, apart from the tracking store (one central "
        "registry for every environment); default: the tracking URI",
    )
    environment: str | None = Field(
        None,
        validation_alias=AliasChoices("MLOPS_ENV"),
        description="the profile of mlops.toml in force ([env.<name>]): `mlops --env NAME` "
        "or MLOPS_ENV",
    )
    artifact_location: str | None = Field(
        None,
        description="where new experiments keep their artifacts (a folder, file:// or s3:// "
        "URI); default <work_dir>/mlartifacts for a local store. With a central registry, "
        "every environment must reach it: a registered version's files stay where the "
        "environment that trained it logged them",
    )
    require_promotion: bool | None = Field(
        None,
        description="batch and deploy use only versions approved in the registry and promoted "
        "to this environment (`mlops promote NAME VERSION --to ENV`); default: on in the "
        "environment named prod, off elsewhere",
    )
    work_pool: str = Field(
        "mlops-local",
        description="Prefect work pool this environment's deployments run on "
        "(`prefect deploy --all --pool ...`)",
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
    sagemaker: SageMakerSettings = Field(default_factory=SageMakerSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    autoscaling: AutoscalingSettings = Field(default_factory=AutoscalingSettings)

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
        given = getattr(init_settings, "init_kwargs", {})
        in_code = given.get("environment") or given.get("MLOPS_ENV")
        environment = in_code or os.environ.get("MLOPS_ENV")
        return (
            init_settings,
            env_settings,
            _ProjectFile(settings_cls, project_file, environment, required=not in_code),
        )

    @property
    def effective_tracking_uri(self) -> str:
        """The MLflow tracking URI in force."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.work_dir / 'mlflow.db').resolve()}"

    @property
    def effective_registry_uri(self) -> str:
        """The MLflow model registry URI in force: ``registry_uri``, else the tracking URI."""
        return self.registry_uri or self.effective_tracking_uri

    @property
    def requires_promotion(self) -> bool:
        """Whether batch and deploy here take only approved versions promoted to this
        environment (``require_promotion``; by default in the environment named ``prod``)."""
        if self.require_promotion is not None:
            return self.require_promotion
        return self.environment == "prod"

    @property
    def artifact_root(self) -> str:
        """Where new experiments keep their artifacts: ``artifact_location``, else
        ``<work_dir>/mlartifacts`` (used for local stores only)."""
        location = self.artifact_location
        if location is None:
            return (self.work_dir / "mlartifacts").resolve().as_uri()
        if "://" in location:
            return location.rstrip("/")
        return Path(location).expanduser().resolve().as_uri()

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


class _ProjectFile(TomlConfigSettingsSource):
    """The project file, with the selected environment's profile merged over it."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        path: str,
        environment: str | None,
        *,
        required: bool,
    ) -> None:
        self._environment = environment
        self._required = required  # selected by the user (MLOPS_ENV, --env): it must exist
        self._source = path
        super().__init__(settings_cls, toml_file=path)

    def _read_files(self, files: Any, deep_merge: bool = False) -> dict[str, Any]:
        data = super()._read_files(files, deep_merge=deep_merge)
        return apply_profile(
            data,
            self._environment,
            source=self._source,
            known_keys=Settings.model_fields,
            required=self._required,
        )


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
    data["registry_uri"] = mask_uri(settings.effective_registry_uri)
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


#: pip packages of the database drivers SQLAlchemy imports for MLflow's SQL stores.
_DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "MySQLdb": "mysqlclient",
    "pymysql": "PyMySQL",
    "pyodbc": "pyodbc",
    "pymssql": "pymssql",
}
_SQL_SCHEMES = ("postgresql", "postgres", "mysql", "mssql", "oracle")


def check_store_driver(uri: str, setting: str = "tracking_uri") -> None:
    """Fail in a line when a SQL tracking/registry store's database driver is not installed.

    MLflow would otherwise fail deep inside SQLAlchemy, after the work began.

    Raises:
        ConfigError: naming the missing driver and the pip command that installs it.
    """
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme.split("+", 1)[0] not in _SQL_SCHEMES:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = mask_uri(uri)
    try:
        dialect = make_url(uri).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise ConfigError(
            f"{setting} {shown} is not a database URL SQLAlchemy understands ({exc}); write "
            "e.g. postgresql://user:password@host:5432/mlflow"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = (exc.name or str(exc)).split(".")[0]
        package = _DRIVER_PACKAGES.get(module, module)
        raise ConfigError(
            f"{setting} {shown} needs the database driver {module!r}, which is not installed; "
            f"install it with `pip install '{package}'`, or use a sqlite:/// or http:// store"
        ) from None
