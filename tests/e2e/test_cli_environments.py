"""``mlops --env``, ``mlops promote`` and ``mlops lineage`` as a user runs them: subprocesses in
a project whose mlops.toml has a dev and a prod profile over one central registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

MLOPS = Path(sys.executable).parent / "mlops"
MODEL = "clitaxi"


def _project_file(root: Path) -> str:
    return f"""\
registry_uri = "sqlite:///{root}/registry.db"
artifact_location = "{root}/shared-artifacts"

[training]
n_estimators = 40
early_stopping_rounds = 10
n_jobs = 2

[env.dev]
work_dir = "{root}/dev"

[env.prod]
work_dir = "{root}/prod"
work_pool = "prod-pool"
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The project folder, and the version (and its training run) dev registered."""
    from mlops.pipelines import run_training_pipeline
    from mlops.settings import load_settings

    root = tmp_path_factory.mktemp("envs-cli")
    (root / "mlops.toml").write_text(_project_file(root))
    os.environ["MLOPS_CONFIG"] = str(root / "mlops.toml")
    try:
        dev = load_settings(environment="dev")
    finally:
        del os.environ["MLOPS_CONFIG"]
    assert dev.work_dir == root / "dev" and dev.registry_uri
    result = run_training_pipeline(dev, model_name=MODEL, dataset="taxi", rows=1500)
    return root, str(result.registered.version), result.run_id


def _mlops(
    cwd: Path, *args: str, with_env: dict[str, str] | None = None, timeout: int = 120
) -> subprocess.CompletedProcess[str]:
    extra = with_env or {}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLOPS_", "MLFLOW_", "_MLOPS_")) and k != "PREFECT_PROFILE"
    }
    env.update(COLUMNS="200", NO_COLOR="1", USER="tester", **extra)
    return subprocess.run(
        [str(MLOPS), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_env_selects_the_profile_and_names_a_missing_one(
    project: tuple[Path, str, str],
) -> None:
    root, _, _ = project
    shown = _mlops(root, "--env", "prod", "config", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["environment"] == "prod" and data["work_pool"] == "prod-pool"
    assert data["tracking_uri"] == f"sqlite:///{root}/prod/mlflow.db"
    assert data["registry_uri"] == f"sqlite:///{root}/registry.db"

    wrong = _mlops(root, "--env", "staging", "config", "show")
    assert wrong.returncode == 1
    errors = [line for line in wrong.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "'staging' has no profile" in errors[0]
    assert "profiles: dev, prod" in errors[0]


def test_promote_and_lineage_across_environments(project: tuple[Path, str, str]) -> None:
    root, version, run_id = project
    refused = _mlops(root, "--env", "prod", "promote", MODEL, version, "--to", "prod")
    assert refused.returncode == 1
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not approved" in errors[0] and "mlops approve" in errors[0]

    approved = _mlops(root, "--env", "dev", "approve", MODEL, version, "--approver", "alice")
    assert approved.returncode == 0, approved.stderr
    promoted = _mlops(
        root, "--env", "prod", "promote", MODEL, version, "--to", "prod", "--by", "dave"
    )
    assert promoted.returncode == 0, promoted.stderr
    assert f"{MODEL} v{version}: promoted to prod by dave at " in promoted.stdout

    shown = _mlops(root, "--env", "prod", "lineage", MODEL, version, "--all-envs", "--json")
    assert shown.returncode == 0, shown.stderr
    lineage = json.loads(shown.stdout)
    assert lineage["training_run"]["run_id"] == run_id
    assert lineage["training_run"]["found"] and lineage["training_run"]["environment"] == "dev"
    assert lineage["approval"]["by"] == "alice"
    assert [(p["environment"], p["by"]) for p in lineage["promotions"]] == [("prod", "dave")]
    assert lineage["code"]["digest"]

    tree = _mlops(root, "--env", "prod", "lineage", MODEL, version)
    assert tree.returncode == 0, tree.stderr
    assert "not in the tracking stores searched" in tree.stdout  # prod's store alone
    assert "approved by alice" in tree.stdout and "prod: by dave" in tree.stdout

    back = _mlops(root, "--env", "dev", "lineage", "--run", run_id)
    assert back.returncode == 0, back.stderr
    assert f"trained {MODEL} v{version}" in back.stdout


def test_deploy_in_prod_ships_a_version_trained_in_dev(
    project: tuple[Path, str, str], prefect_server: str
) -> None:
    """`mlops --env prod deploy`: prod's tracking store does not hold the training run, and
    the deployment reads what it needs through the central registry and the shared store."""
    from mlops.backends.local.gateway.manager import delete_endpoint, list_endpoints
    from mlops.settings import load_settings

    root, version, _ = project
    approved = _mlops(root, "--env", "dev", "approve", MODEL, version, "--approver", "alice")
    assert approved.returncode == 0, approved.stderr
    promoted = _mlops(root, "--env", "prod", "promote", MODEL, version, "--to", "prod")
    assert promoted.returncode == 0, promoted.stderr
    os.environ["MLOPS_CONFIG"] = str(root / "mlops.toml")
    try:
        prod = load_settings(environment="prod")
    finally:
        del os.environ["MLOPS_CONFIG"]
    try:
        deployed = _mlops(
            root, "--env", "prod", "deploy", "-m", MODEL, "--version", version,
            "--auto-approve", "--bake", "0", "--termination-wait", "0",
            with_env={"PREFECT_API_URL": prefect_server}, timeout=400,
        )  # fmt: skip
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        said = " ".join(deployed.stdout.split())
        assert f"created {MODEL}-prod serving v{version}" in said
        from mlops.tracking import connect

        client = connect(prod)
        assert str(client.get_model_version_by_alias(MODEL, "champion").version) == version
        experiment = client.get_experiment_by_name(f"{MODEL}/deployments")
        runs = client.search_runs([experiment.experiment_id])  # in prod's own store
        evaluations = [r for r in runs if r.data.tags.get("mlops.stage") == "endpoint-evaluation"]
        assert [r.data.tags["mlops.endpoint_evaluation"] for r in evaluations] == ["passed"]
    finally:
        for state in list_endpoints(prod):
            delete_endpoint(prod, state.name)
        _unapproved(prod, version)


def _unapproved(settings: Any, version: str) -> None:
    """Back to pending and not promoted, as the module's training left it."""
    from mlops.tracking import Tags, connect
    from mlops.tracking.conventions import promotion_tags

    client = connect(settings)
    client.set_model_version_tag(MODEL, version, Tags.APPROVAL, "pending")
    for key in promotion_tags("prod"):
        if key in client.get_model_version(MODEL, version).tags:
            client.delete_model_version_tag(MODEL, version, key)
