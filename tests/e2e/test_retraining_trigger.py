"""The retraining deployment of prefect.yaml, triggered by real events on a real server.

`prefect deploy` creates the deployment and its automations from prefect.yaml's
`triggers:`; a process worker runs what they start. Drift for a model → exactly one
retraining run → a new registered version; an unrelated event → no run; new data inside
the cooldown → a run that skips training and registers nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from flows.events import emit_model_event
from mlops.stages.pipeline import run_training_pipeline
from mlops.tracking import Events, Tags, connect
from tests.conftest import REPO, make_settings

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
POOL = "mlops-retraining-e2e"
MODEL = "taxi-retrain"
T = TypeVar("T")


def _poll(what: str, check: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
    """``check()`` until it returns something, or fail saying what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s")
        time.sleep(every)


def _prefect(*args: str, env: dict[str, str], timeout: int = 300) -> str:
    proc = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"prefect {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("retraining-e2e")


@pytest.fixture(scope="module")
def env(prefect_server: str, root: Path) -> dict[str, str]:
    """What the deploy, the worker and the runs it starts see: a temp store, tiny training."""
    work_dir = root / ".mlops"
    return {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "PREFECT_HOME": str(root / "prefect-home"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "MLOPS_WORK_DIR": str(work_dir),
        "MLOPS_TRACKING_URI": f"sqlite:///{work_dir.resolve()}/mlflow.db",
        "MLOPS_TRAINING__N_ESTIMATORS": "40",
        "MLOPS_TRAINING__EARLY_STOPPING_ROUNDS": "10",
        "MLOPS_TRAINING__N_JOBS": "2",
        "MLOPS_RETRAINING__DATASET": "taxi",
        "MLOPS_RETRAINING__ROWS": "1500",
    }


@pytest.fixture(scope="module")
def deployment(env: dict[str, str]) -> Iterator[Any]:
    """retraining/on-event deployed from prefect.yaml (deploy=false: no approval pause)."""
    from prefect.client.orchestration import get_client

    _prefect("work-pool", "create", POOL, "--type", "process", "--overwrite", env=env)
    _prefect(
        "deploy", "-n", "retraining/on-event", "--pool", POOL, "--param", "deploy=false", env=env
    )
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("retraining/on-event")
    try:
        yield deployment
    finally:
        with get_client(sync_client=True) as client:
            client.delete_resource_owned_automations(f"prefect.deployment.{deployment.id}")
            client.delete_deployment(deployment.id)


@pytest.fixture(scope="module")
def worker(env: dict[str, str], deployment: Any, root: Path) -> Iterator[Path]:
    """A process worker polling the test's pool; yields its log file."""
    log_path = root / "worker.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--limit", "2"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield log_path
        finally:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


def _runs(deployment_id: uuid.UUID) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )


def _finished(run_id: uuid.UUID, worker_log: Path) -> Callable[[], Any]:
    from prefect.client.orchestration import get_client

    def check() -> Any:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
        if run.state is not None and run.state.is_final():
            assert run.state.is_completed(), (
                f"{run.name}: {run.state.type} {run.state.message}\n"
                f"{worker_log.read_text()[-4000:]}"
            )
            return run
        return None

    return check


def _logged(run_id: uuid.UUID, text: str) -> Callable[[], str | None]:
    """A check that the run's logs (shipped in batches) hold ``text``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    def check() -> str | None:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        found = [log.message for log in logs if text in log.message]
        return found[0] if found else None

    return check


def test_yaml_triggers_are_the_deployments_automations(deployment: Any) -> None:
    from prefect.client.orchestration import get_client

    spec = next(
        d
        for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
        if d["entrypoint"] == "flows/retraining.py:retraining"
    )
    assert spec["concurrency_limit"] == 1
    assert deployment.global_concurrency_limit is not None
    assert deployment.global_concurrency_limit.limit == 1
    with get_client(sync_client=True) as client:
        automations = client.read_resource_related_automations(
            f"prefect.deployment.{deployment.id}"
        )
    by_name = {a.name: a for a in automations}
    assert set(by_name) == {t["name"] for t in spec["triggers"]}
    for trigger in spec["triggers"]:
        automation = by_name[trigger["name"]]
        assert automation.trigger.expect == set(trigger["expect"])
        assert automation.trigger.for_each == {"prefect.resource.id"}
        assert automation.trigger.within.total_seconds() == trigger["within"]
        (action,) = automation.actions
        assert action.deployment_id == deployment.id
        assert action.parameters == trigger["parameters"]


def test_drift_event_retrains_once_and_the_cooldown_holds(
    env: dict[str, str], deployment: Any, worker: Path, root: Path
) -> None:
    settings = make_settings(root, retraining={"dataset": "taxi", "rows": 1500})
    assert settings.effective_tracking_uri == env["MLOPS_TRACKING_URI"]
    run_training_pipeline(settings, model_name=MODEL, dataset="taxi", rows=1000)
    client = connect(settings)
    assert [str(v.version) for v in client.search_model_versions(f"name='{MODEL}'")] == ["1"]

    # an event the triggers do not expect starts nothing
    emit_model_event(Events.MODEL_APPROVED, MODEL, {"version": "1"})
    time.sleep(8)  # proving that nothing happens takes a wait
    assert _runs(deployment.id) == []

    # drift: exactly one run, started by the automation with the event's values
    payload = {"drift_share": 0.67, "drifted_features": ["trip_distance"], "window": "1h"}
    started = time.monotonic()
    emit_model_event(Events.DRIFT_DETECTED, MODEL, payload)
    (run,) = _poll("a retraining run was created", lambda: _runs(deployment.id) or None, 60)
    emit_model_event(Events.DRIFT_DETECTED, MODEL, {**payload, "drift_share": 0.7})  # same incident
    assert run.parameters["model_name"] == MODEL
    assert run.parameters["reason"] == "drift"
    assert run.parameters["payload"] == payload  # a dict, not its text
    assert uuid.UUID(run.parameters["event_id"])
    assert run.parameters["deploy"] is False  # set at deploy time, merged by the server
    done = _poll("the retraining run finished", _finished(run.id, worker), 300, every=2)
    print(f"drift → completed retraining in {time.monotonic() - started:.1f} s")

    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{MODEL}'"))
    assert versions == [1, 2]
    new = client.get_model_version(MODEL, "2")
    assert new.tags[Tags.DATA_SOURCE] == "builtin:taxi"
    tags = client.get_registered_model(MODEL).tags
    assert tags[Tags.LAST_RETRAINING_REASON] == f"drift (event {run.parameters['event_id']})"
    _poll("the run logged the new version", _logged(done.id, "registered taxi-retrain v2"), 30)

    # new data inside the cooldown: its trigger starts a run, which trains nothing
    emit_model_event(Events.DATA_UPDATED, MODEL, {"source": "builtin:taxi", "reason": "data"})
    second = _poll(
        "a run for mlops.data.updated was created",
        lambda: next((r for r in _runs(deployment.id) if r.id != run.id), None),
        60,
    )
    assert second.parameters["reason"] == "data"
    _poll("the second run finished", _finished(second.id, worker), 120, every=2)
    skip = _poll("the skip was logged", _logged(second.id, "skipped: cooldown until"), 30)
    assert "drift (event" in skip  # it names the retraining it cools down from
    assert sorted(int(v.version) for v in client.search_model_versions(f"name='{MODEL}'")) == [
        1,
        2,
    ]
    # the second drift event of the incident started nothing
    assert [r.id for r in _runs(deployment.id)] == [run.id, second.id]
