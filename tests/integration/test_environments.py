"""Dev and prod environments with one central model registry (three SQLite stores).

Dev trains and registers into the central registry; prod sees the version there, but its
batch inference and deployments refuse it until it is approved in that registry and promoted
to prod. The version's files stay in the shared artifact folder dev logged them to, and prod
reads them from there. Lineage follows the version to its runs in both stores, and back.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.data import make_batch
from mlops.errors import ApprovalError, EndpointNotFoundError
from mlops.registry import approve, promote, reject
from mlops.settings import Settings
from mlops.stages.batch import run_batch
from mlops.stages.deploy import deploy_dev, deploy_prod, endpoint_name
from mlops.stages.lineage import run_lineage, version_lineage
from mlops.tracking import Tags, connect
from mlops.tracking.conventions import promotion_tags
from tests.conftest import REPO, make_settings

pytestmark = pytest.mark.slow

MODEL = "envtaxi"


def _env_settings(root: Path, env: str) -> Settings:
    return make_settings(
        root / env,
        environment=env,
        tracking_uri=f"sqlite:///{root / f'{env}.db'}",
        registry_uri=f"sqlite:///{root / 'registry.db'}",
        artifact_location=str(root / "shared-artifacts"),
        batch={"check_drift": False},  # 200 rows against a 2,000-row model: not the point here
    )


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Settings, str]:
    """Dev and prod settings over one central registry, and the version dev registered."""
    from mlops.pipelines import run_training_pipeline

    root = tmp_path_factory.mktemp("environments")
    dev, prod = _env_settings(root, "dev"), _env_settings(root, "prod")
    result = run_training_pipeline(dev, model_name=MODEL, dataset="taxi", rows=2000)
    return dev, prod, str(result.registered.version)


def _unpromoted(prod: Settings, version: str) -> None:
    client = connect(prod)
    for key in promotion_tags("prod"):
        if key in client.get_model_version(MODEL, version).tags:
            client.delete_model_version_tag(MODEL, version, key)


def _batch_runs(settings: Settings) -> int:
    client = connect(settings)
    experiment = client.get_experiment_by_name(f"{MODEL}/batch")
    return 0 if experiment is None else len(client.search_runs([experiment.experiment_id]))


def _batch_input(tmp_path: Path) -> str:
    path = tmp_path / "input.csv"
    make_batch("taxi", rows=200, seed=3).to_csv(path, index=False)
    return str(path)


def test_dev_registers_into_the_central_registry_and_prod_sees_it(
    stores: tuple[Settings, Settings, str],
) -> None:
    from mlflow import MlflowClient

    dev, prod, version = stores
    assert not dev.requires_promotion and prod.requires_promotion
    central = MlflowClient(tracking_uri=dev.registry_uri, registry_uri=dev.registry_uri)
    mv = central.get_model_version(MODEL, version)
    assert mv.tags[Tags.APPROVAL] == "pending"
    # dev's own store holds the training run but no registry of its own
    dev_store = MlflowClient(
        tracking_uri=dev.effective_tracking_uri, registry_uri=dev.effective_tracking_uri
    )
    assert dev_store.search_registered_models() == []
    assert dev_store.get_run(mv.run_id).info.status == "FINISHED"
    # prod has its own tracking store and the same registry
    prod_client = connect(prod)
    assert prod_client.get_model_version(MODEL, version).run_id == mv.run_id
    assert prod_client.search_experiments(filter_string=f"name = '{MODEL}'") == []
    # the files are in the shared artifact folder, where prod can read them
    download = central.get_model_version_download_uri(MODEL, version)
    assert download.startswith(Path(dev.artifact_location or "").resolve().as_uri())


def test_prod_refuses_a_version_not_approved_in_the_central_registry(
    stores: tuple[Settings, Settings, str], tmp_path: Path
) -> None:
    dev, prod, version = stores
    reject(connect(dev), MODEL, version, comment="not this one", approver="erin")
    output = tmp_path / "out.parquet"
    runs_before = _batch_runs(prod)
    with pytest.raises(ApprovalError, match=r"not approved in the model registry.*rejected"):
        run_batch(prod, f"{MODEL}/{version}", _batch_input(tmp_path), str(output))
    assert not output.exists()
    assert _batch_runs(prod) == runs_before  # refused before its run opened
    for deploy in (deploy_dev, deploy_prod):
        with pytest.raises(ApprovalError, match="not approved"):
            deploy(prod, MODEL, version)
    # refused before any endpoint started: none exists, not even a rollout lock
    from mlops.backends.local.gateway.manager import describe_endpoint

    for env in ("dev", "prod"):
        with pytest.raises(EndpointNotFoundError):
            describe_endpoint(prod, endpoint_name(prod, MODEL, env))
    assert not prod.endpoints_dir.exists() or not any(prod.endpoints_dir.iterdir())


def test_approve_then_promote_records_who_and_when_and_prod_runs_it(
    stores: tuple[Settings, Settings, str], tmp_path: Path
) -> None:
    dev, prod, version = stores
    approve(connect(dev), MODEL, version, comment="looks good", approver="alice")
    _unpromoted(prod, version)
    with pytest.raises(ApprovalError, match="never promoted to prod.*--to prod"):
        run_batch(prod, f"{MODEL}/{version}", _batch_input(tmp_path), str(tmp_path / "x.csv"))

    mv = promote(connect(prod), MODEL, version, to="prod", by="bob", comment="release 7")
    by_tag, at_tag = promotion_tags("prod")
    assert mv.tags[by_tag] == "bob" and mv.tags[at_tag].endswith("Z")
    assert f"promoted to **prod** by bob at {mv.tags[at_tag]}: release 7" in mv.description

    output = tmp_path / "predictions.csv"
    result = run_batch(prod, f"{MODEL}/{version}", _batch_input(tmp_path), str(output))
    assert output.is_file() and result.rows == 200
    # the batch run is in prod's store, not dev's; lineage finds it both ways
    assert connect(prod).get_run(result.run_id).info.status == "FINISHED"
    back = run_lineage(prod, result.run_id)
    assert back.relation == "predicted with"
    assert [(v.name, v.version) for v in back.versions] == [(MODEL, version)]
    batch_runs = version_lineage(prod, MODEL, version).batch
    assert result.run_id in [run.run_id for run in batch_runs]
    assert version_lineage(prod, MODEL, version).promotions[0].by == "bob"


def test_promote_refuses_a_version_not_approved(stores: tuple[Settings, Settings, str]) -> None:
    dev, prod, version = stores
    reject(connect(dev), MODEL, version, approver="erin")
    _unpromoted(prod, version)
    with pytest.raises(ApprovalError, match="cannot be promoted to prod.*mlops approve"):
        promote(connect(prod), MODEL, version, to="prod", by="bob")
    assert promotion_tags("prod")[1] not in connect(prod).get_model_version(MODEL, version).tags


def test_lineage_from_the_version_to_its_runs_and_back(
    stores: tuple[Settings, Settings, str],
) -> None:
    dev, prod, version = stores
    approve(connect(dev), MODEL, version, comment="ship it", approver="carol")
    found = version_lineage(prod, MODEL, version, other_environments=[dev])
    assert found.training_run is not None and found.training_run.found
    assert found.training_run.environment == "dev" and found.training_run.stage == "training"
    assert found.training_run.link and found.training_run.run_id in found.training_run.link
    assert found.code.digest and (found.code.git_commit or found.code.uncommitted_changes)
    assert found.data.digest and found.data.source
    assert (found.approval.state, found.approval.by, found.approval.comment) == (
        "approved",
        "carol",
        "ship it",
    )
    # prod's store alone does not hold the training run: it is named, not lost
    alone = version_lineage(prod, MODEL, version)
    assert alone.training_run is not None and not alone.training_run.found

    back = run_lineage(dev, found.training_run.run_id)
    assert back.relation == "trained"
    assert [(v.name, v.version) for v in back.versions] == [(MODEL, version)]


def _delete_endpoints(settings: Settings) -> None:
    from mlops.backends.local.gateway.manager import delete_endpoint, list_endpoints

    for state in list_endpoints(settings):
        delete_endpoint(settings, state.name)


def test_the_deployment_pipeline_in_prod_reads_training_through_the_shared_stores(
    stores: tuple[Settings, Settings, str],
) -> None:
    """Prod's tracking store does not hold the training run: the endpoint evaluation reads
    the version's test split and metrics by the absolute artifact URI the central registry
    gives, and the whole declared pipeline ships the version there."""
    from mlops.pipelines import DEPLOYMENT
    from mlops.pipelines.spec import run_pipeline
    from mlops.rollout import RolloutResult
    from mlops.stages.deploy import EndpointEvaluation

    dev, prod, version = stores
    approve(connect(dev), MODEL, version, comment="ship it", approver="alice")
    promote(connect(prod), MODEL, version, to="prod", by="bob")
    mv = connect(prod).get_model_version(MODEL, version)
    artifacts = mv.tags[Tags.TRAINING_ARTIFACTS]
    assert artifacts.startswith(Path(dev.artifact_location or "").resolve().as_uri())
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):  # not in prod's tracking store
        connect(prod).get_run(mv.run_id)
    try:
        run_id, done = run_pipeline(
            DEPLOYMENT, prod, model_name=MODEL, params={"version": version}
        )
        evaluation = done["evaluate_endpoint"]
        assert isinstance(evaluation, EndpointEvaluation)
        assert evaluation.passed and evaluation.rows > 0
        assert evaluation.training_metrics["rmse"] > 0  # from the run's artifacts
        rollout = done["rollout_prod"]
        assert isinstance(rollout, RolloutResult) and rollout.completed
        assert rollout.endpoint == endpoint_name(prod, MODEL, "prod")
        client = connect(prod)
        run = client.get_run(run_id)  # the pipeline's run, in prod's store
        assert run.info.status == "FINISHED"
        assert run.data.tags[Tags.MODEL_VERSION] == version
        assert str(client.get_model_version_by_alias(MODEL, "champion").version) == version
        records = client.get_run(evaluation.run_id).data.tags
        assert records["mlops.deployment_pipeline.run_id"] == run_id
    finally:
        _delete_endpoints(prod)


def test_the_declared_approval_step_refuses_a_version_not_approved_in_the_registry(
    stores: tuple[Settings, Settings, str],
) -> None:
    from mlops.pipelines import DEPLOYMENT
    from mlops.pipelines.spec import run_step

    dev, _, version = stores
    reject(connect(dev), MODEL, version, approver="erin")
    try:
        run_id, _ = run_step(
            DEPLOYMENT, "deploy_dev", dev, model_name=MODEL, params={"version": version}
        )
        run_step(DEPLOYMENT, "evaluate_endpoint", dev, model_name=MODEL, run_id=run_id)
        with pytest.raises(ApprovalError) as refused:
            run_step(DEPLOYMENT, "approval", dev, model_name=MODEL, run_id=run_id)
        assert str(refused.value) == (
            f"version {version} of {MODEL} is not approved (mlops.approval=rejected in the "
            f"model registry); approve it with `mlops approve {MODEL} {version}` and run again"
        )
        assert connect(dev).get_run(run_id).info.status == "FAILED"
        with pytest.raises(EndpointNotFoundError):  # nothing reached prod
            from mlops.backends.local.gateway.manager import describe_endpoint

            describe_endpoint(dev, endpoint_name(dev, MODEL, "prod"))
    finally:
        _delete_endpoints(dev)


def _entry_point(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m mlops.projects deployment ...`` (what the MLproject entry points run) in a
    fresh process whose settings come from its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))}
    env.update(
        PYTHONPATH=str(REPO),
        MLOPS_WORK_DIR=str(settings.work_dir),
        MLOPS_TRACKING_URI=settings.effective_tracking_uri,
        MLOPS_REGISTRY_URI=settings.effective_registry_uri,
        MLOPS_ARTIFACT_LOCATION=settings.artifact_location or "",
        MLOPS_BATCH__CHECK_DRIFT="false",
    )
    return subprocess.run(
        [sys.executable, "-m", "mlops.projects", "deployment", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_deployment_entry_points_chain_on_the_pipeline_run_in_fresh_processes(
    stores: tuple[Settings, Settings, str],
) -> None:
    """Each step in its own process reads the earlier steps' results from the pipeline's
    run; the approval step stops the chain, clearly, until the registry approves."""
    dev, _, version = stores
    reject(connect(dev), MODEL, version, approver="erin")
    try:
        first = _entry_point(dev, "deploy_dev", "--model-name", MODEL, "--version", version)
        assert first.returncode == 0, first.stderr
        found = re.search(r"deploy_dev: done in run (\w+)", first.stdout)
        assert found, first.stdout
        run_id = found[1]
        evaluated = _entry_point(dev, "evaluate_endpoint", "--run-id", run_id)
        assert evaluated.returncode == 0, evaluated.stderr
        refused = _entry_point(dev, "approval", "--run-id", run_id)
        assert refused.returncode == 1
        assert f"error: version {version} of {MODEL} is not approved" in refused.stderr
        assert f"`mlops approve {MODEL} {version}` and run again" in refused.stderr

        approve(connect(dev), MODEL, version, approver="alice")
        client = connect(dev)
        assert client.get_run(run_id).info.status == "FAILED"  # the refused step failed it
        assert _entry_point(dev, "approval", "--run-id", run_id).returncode == 0  # run again
        shipped = _entry_point(dev, "rollout_prod", "--run-id", run_id)
        assert shipped.returncode == 0, shipped.stderr
        assert client.get_run(run_id).info.status == "FINISHED"  # the last step closed it
        assert str(client.get_model_version_by_alias(MODEL, "champion").version) == version
    finally:
        _delete_endpoints(dev)
