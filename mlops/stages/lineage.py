"""Lineage you can follow, both ways: from a registered version to what made it and what it
went through, and from any of those runs back to the version(s).

A version's lineage holds its training run (with a link), the data (digest and source), the
code (digest, git commit, uncommitted changes), the Prefect flow run that trained it, the
approval (who, when, why), its promotions to environments, every rollout record (with its
outcome), its endpoint evaluation, and its monitoring and batch runs. Everything is read from
what the stages already record: version tags in the registry (which may be a central one) and
runs in the tracking stores given, so several environments' stores can be searched at once
(dev holds the training run, prod the rollouts and the monitoring).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from mlops.errors import ConfigError, ModelNotFoundError
from mlops.registry import get_version, promotions
from mlops.stages.batch import STAGE as BATCH_STAGE
from mlops.tracking import Stages, Tags, batch_experiment, connect, monitoring_experiment
from mlops.tracking.links import model_version_path, run_path, ui_url

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from mlops.settings import Settings

__all__ = [
    "Approval",
    "CodeRevision",
    "DataOrigin",
    "Promotion",
    "RunLineage",
    "RunRef",
    "VersionLineage",
    "VersionRef",
    "run_lineage",
    "version_lineage",
]

#: Monitoring and batch runs listed per version, newest first.
MAX_RUNS = 50


class RunRef(BaseModel):
    """One MLflow run as lineage shows it; ``found`` is false when no store searched holds it."""

    run_id: str
    found: bool = True
    environment: str | None = Field(None, description="the environment whose store holds it")
    name: str | None = None
    experiment: str | None = None
    stage: str | None = None
    status: str | None = None
    outcome: str | None = Field(None, description="rollout outcome, monitor or batch status")
    started_at: str | None = None
    link: str | None = Field(None, description="the run in the MLflow UI")


class DataOrigin(BaseModel):
    digest: str | None = None
    source: str | None = None


class CodeRevision(BaseModel):
    digest: str | None = None
    git_commit: str | None = None
    uncommitted_changes: str | None = None


class Approval(BaseModel):
    state: str = "none"
    by: str | None = None
    at: str | None = None
    comment: str | None = None


class Promotion(BaseModel):
    environment: str
    by: str | None = None
    at: str


class VersionLineage(BaseModel):
    """Where a registered version came from and what it went through."""

    name: str
    version: str
    link: str
    created_at: str
    aliases: list[str] = Field(default_factory=list)
    source: str | None = Field(None, description="where the version's files are")
    training_run: RunRef | None = None
    prefect_flow_run_id: str | None = None
    data: DataOrigin = Field(default_factory=DataOrigin)
    code: CodeRevision = Field(default_factory=CodeRevision)
    approval: Approval = Field(default_factory=Approval)
    promotions: list[Promotion] = Field(default_factory=list)
    deployment: str | None = Field(None, description="live, retired or none")
    endpoint_evaluation: RunRef | None = None
    rollouts: list[RunRef] = Field(default_factory=list)
    monitoring: list[RunRef] = Field(default_factory=list)
    batch: list[RunRef] = Field(default_factory=list)


class VersionRef(BaseModel):
    name: str
    version: str
    link: str


class RunLineage(BaseModel):
    """A run and the registered version(s) it trained, rolled out, monitored or predicted."""

    run: RunRef
    relation: str = Field(description="trained, rolled out, evaluated, monitored, predicted with")
    versions: list[VersionRef] = Field(default_factory=list)


class _Stores:
    """The tracking stores searched for runs, in order: (environment, client, tracking URI)."""

    def __init__(self, settings: Settings, others: list[Settings] | None = None) -> None:
        self.registry = connect(settings)  # the registry (and first store) of this environment
        self.stores: list[tuple[str | None, MlflowClient, str]] = [
            (settings.environment, self.registry, settings.effective_tracking_uri)
        ]
        seen = {settings.effective_tracking_uri}
        for other in others or []:
            uri = other.effective_tracking_uri
            if uri in seen:
                continue
            seen.add(uri)
            from mlflow import MlflowClient

            self.stores.append((other.environment, MlflowClient(tracking_uri=uri), uri))

    def run(self, run_id: str) -> tuple[Run, str | None, str] | None:
        from mlflow.exceptions import MlflowException

        for env, client, uri in self.stores:
            try:
                return client.get_run(run_id), env, uri
            except MlflowException:
                continue
        return None

    def ref(self, run_id: str) -> RunRef:
        found = self.run(run_id)
        if found is None:
            return RunRef(run_id=run_id, found=False)
        return self._ref(*found)

    def _ref(self, run: Run, env: str | None, uri: str) -> RunRef:
        client = next(c for e, c, u in self.stores if u == uri)
        tags = run.data.tags
        experiment = client.get_experiment(run.info.experiment_id)
        return RunRef(
            run_id=run.info.run_id,
            environment=env,
            name=run.info.run_name,
            experiment=experiment.name if experiment else None,
            stage=tags.get(Tags.STAGE),
            status=run.info.status,
            outcome=tags.get(Tags.ROLLOUT_OUTCOME)
            or tags.get(Tags.MONITOR_STATUS)
            or tags.get(Tags.BATCH_OUTCOME)
            or tags.get(Tags.ENDPOINT_EVALUATION),
            started_at=_when(run.info.start_time),
            link=ui_url(uri, run_path(run.info.experiment_id, run.info.run_id)),
        )

    def search(self, experiment: str, name: str, version: str) -> list[RunRef]:
        """Runs of ``experiment`` (in every store) tagged with this model version."""
        refs: list[tuple[int, RunRef]] = []
        for env, client, uri in self.stores:
            found = client.get_experiment_by_name(experiment)
            if found is None:
                continue
            runs = client.search_runs(
                [found.experiment_id],
                filter_string=(
                    f"tags.`{Tags.MODEL_NAME}` = '{_quote(name)}' and "
                    f"tags.`{Tags.MODEL_VERSION}` = '{_quote(version)}'"
                ),
                order_by=["attributes.start_time DESC"],
                max_results=MAX_RUNS,
            )
            refs += [(run.info.start_time or 0, self._ref(run, env, uri)) for run in runs]
        return [ref for _, ref in sorted(refs, key=lambda item: -item[0])][:MAX_RUNS]


def _when(millis: int | None) -> str | None:
    if not millis:
        return None
    return datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _files(client: MlflowClient, name: str, version: str) -> str | None:
    """Where the version's files are (a shared artifact store, with a central registry)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_download_uri(name, version))
    except MlflowException:
        return None


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def version_lineage(
    settings: Settings,
    name: str,
    version: str,
    *,
    other_environments: list[Settings] | None = None,
) -> VersionLineage:
    """Everything recorded about ``name`` v``version``, from its registry (``registry_uri``)
    and the tracking stores of ``settings`` and ``other_environments``.

    Raises:
        ModelNotFoundError: unknown model or version (the message lists what exists).
    """
    stores = _Stores(settings, other_environments)
    mv = get_version(stores.registry, name, version)
    version = str(mv.version)
    tags = dict(mv.tags)
    training_id = mv.run_id or tags.get(Tags.TRAINING_RUN_ID)
    training = stores.run(training_id) if training_id else None
    run_tags = training[0].data.tags if training else {}

    def pick(key: str) -> str | None:  # the version's tag, else its training run's
        return tags.get(key) or run_tags.get(key)

    aliases = sorted(
        alias
        for alias, v in (stores.registry.get_registered_model(name).aliases or {}).items()
        if str(v) == version
    )
    rollout_ids = [i for i in (tags.get(Tags.ROLLOUT_RUN_IDS) or "").split(",") if i]
    evaluation_id = tags.get(Tags.ENDPOINT_EVALUATION_RUN_ID)
    return VersionLineage(
        name=name,
        version=version,
        link=ui_url(settings.effective_registry_uri, model_version_path(name, version)),
        created_at=_when(mv.creation_timestamp) or "",
        aliases=aliases,
        source=_files(stores.registry, name, version),
        training_run=(
            stores._ref(*training)
            if training
            else (RunRef(run_id=training_id, found=False) if training_id else None)
        ),
        prefect_flow_run_id=pick(Tags.PREFECT_FLOW_RUN_ID),
        data=DataOrigin(digest=pick(Tags.DATA_DIGEST), source=pick(Tags.DATA_SOURCE)),
        code=CodeRevision(
            digest=pick(Tags.CODE_DIGEST),
            git_commit=pick(Tags.GIT_COMMIT),
            uncommitted_changes=pick(Tags.CODE_DIRTY),
        ),
        approval=Approval(
            state=tags.get(Tags.APPROVAL, "none"),
            by=tags.get(Tags.APPROVED_BY),
            at=tags.get(Tags.APPROVED_AT),
            comment=tags.get(Tags.APPROVAL_COMMENT) or None,
        ),
        promotions=[
            Promotion(environment=env, by=who, at=when)
            for env, (who, when) in promotions(tags).items()
        ],
        deployment=tags.get(Tags.DEPLOYMENT),
        endpoint_evaluation=stores.ref(evaluation_id) if evaluation_id else None,
        rollouts=[stores.ref(run_id) for run_id in rollout_ids],
        monitoring=stores.search(monitoring_experiment(name), name, version),
        batch=stores.search(batch_experiment(name), name, version),
    )


_RELATIONS = {
    Stages.TRAINING: "trained",
    Stages.ROLLOUT: "rolled out",
    Stages.ENDPOINT_EVALUATION: "evaluated",
    Stages.MONITORING: "monitored",
    BATCH_STAGE: "predicted with",
}


def run_lineage(
    settings: Settings, run_id: str, *, other_environments: list[Settings] | None = None
) -> RunLineage:
    """The registered version(s) a training, rollout, evaluation, monitoring or batch run
    belongs to.

    Raises:
        ConfigError: no store searched holds the run.
    """
    stores = _Stores(settings, other_environments)
    found = stores.run(run_id)
    if found is None:
        searched = ", ".join(env or "(default)" for env, _, _ in stores.stores)
        raise ConfigError(
            f"run {run_id!r} is in none of the tracking stores searched ({searched}); check the "
            "id (`mlflow runs list`), or run the command in the environment that logged it "
            "(--env NAME), or add --all-envs"
        )
    run, _, _ = found
    ref = stores._ref(*found)
    tags = run.data.tags
    versions: list[tuple[str, str]] = []
    stage = tags.get(Tags.STAGE)
    if stage == Stages.TRAINING or Tags.REGISTERED_AS in tags or stage is None:
        versions = [
            (v.name, str(v.version))
            for v in stores.registry.search_model_versions(f"run_id = '{_quote(run_id)}'")
        ]
    name, version = tags.get(Tags.MODEL_NAME), tags.get(Tags.MODEL_VERSION)
    if not versions and name and version:
        versions = [(name, version)]
    refs = []
    for model, number in sorted(set(versions), key=lambda item: (item[0], int(item[1]))):
        try:
            get_version(stores.registry, model, number)
        except ModelNotFoundError:
            continue  # a served model the registry does not hold
        refs.append(
            VersionRef(
                name=model,
                version=number,
                link=ui_url(settings.effective_registry_uri, model_version_path(model, number)),
            )
        )
    return RunLineage(
        run=ref, relation=_RELATIONS.get(stage or "", stage or "logged"), versions=refs
    )
