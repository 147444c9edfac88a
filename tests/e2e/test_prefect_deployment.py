"""prefect.yaml deploys for real and a process worker runs the deployment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.registry import list_versions
from mlops.tracking import connect
from tests.conftest import REPO, make_settings

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _prefect(*args: str, env: dict[str, str], timeout: int = 300) -> str:
    proc = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, f"prefect {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_deploy_all_then_worker_runs_the_training_deployment(
    prefect_server: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_server,
           "MLOPS_WORK_DIR": str(tmp_path / ".mlops"),
           "MLOPS_WORK_POOL": "mlops-local"}  # prefect.yaml's pool, as `make deploy` sets it
    _prefect("work-pool", "create", "mlops-local", "--type", "process", "--overwrite", env=env)
    _prefect("deploy", "--all", env=env)

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("training-pipeline/monthly")
        assert deployment.work_pool_name == "mlops-local"
        assert deployment.entrypoint == "flows/training.py:training_pipeline"
        crons = [s.schedule.cron for s in deployment.schedules]
        assert crons == ["0 3 1 * *"]
        assert deployment.parameters == {"model_name": "taxi", "dataset": "taxi"}
        assert deployment.job_variables["env"]["PREFECT_LOGGING_EXTRA_LOGGERS"] == "mlops"

    out = _prefect(
        "deployment", "run", "training-pipeline/monthly",
        "-p", "rows=2000", "-p", "model_name=taxi-deployed",
        "-p", f"hyperparameters={json.dumps({'n_estimators': 40})}",
        env=env,
    )
    assert "training-pipeline/monthly" in out
    _prefect("worker", "start", "--pool", "mlops-local", "--run-once", env=env, timeout=400)

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
        mine = [r for r in runs if r.deployment_id == deployment.id]
        assert len(mine) == 1
        assert mine[0].state is not None and mine[0].state.is_completed(), mine[0].state

    versions = list_versions(connect(make_settings(tmp_path)), "taxi-deployed")
    assert [v.version for v in versions] == ["1"]
    assert versions[0].aliases == ["challenger"]
    assert versions[0].approval == "pending"
