"""The retraining deployment of prefect.yaml, triggered by the monitoring flow on a real server.

`prefect deploy` creates the deployment and its automations from prefect.yaml's
`triggers:`; a process worker runs what they start. The drift events come from the real
``monitoring`` flow over captured traffic (SageMaker's capture format, variant ``v1``):
unshifted traffic → no event, no run; shifted traffic → exactly one drift event → exactly one
retraining run → a new registered version; shifted traffic again, inside the trigger's
``within`` and the cooldown → a second drift event that starts nothing; new data inside the
cooldown → a run that skips training and registers nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from flows.events import emit_model_event
from flows.monitoring import monitoring
from mlops.pipelines import run_training_pipeline
from mlops.stages.deploy import endpoint_name
from mlops.tracking import Events, Tags, connect, model_resource_id
from tests.capture_helpers import predict, taxi_rows, write_capture
from tests.conftest import REPO, make_settings

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
POOL = "mlops-retraining-e2e"
MODEL = "taxi-retrain"
T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # captured: normal 10:00, shifted 10:30 and 11:00
WINDOW = timedelta(minutes=10)  # 600 requests, one a second
QUIET_S = 15  # how long "nothing happens" is watched for
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


def _stays_quiet(what: str, check: Callable[[], list[Any]], seconds: float) -> None:
    """``check()`` keeps returning nothing for ``seconds``; fail at once when it does not."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        assert not found, f"{what}: {found}"
        if time.monotonic() > deadline:
            return
        time.sleep(1.0)


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


def _drift_events(api_url: str, since: datetime) -> list[dict[str, Any]]:
    """The ``mlops.drift.detected`` events about MODEL that reached the server since ``since``."""
    page = httpx.post(
        f"{api_url}/events/filter",
        json={
            "filter": {
                "event": {"name": [Events.DRIFT_DETECTED]},
                "any_resource": {"id": [model_resource_id(MODEL)]},
                "occurred": {"since": since.isoformat()},
            },
            "limit": 50,
        },
        timeout=10,
    )
    page.raise_for_status()
    return list(page.json()["events"])


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


def test_monitoring_drift_retrains_once_and_the_cooldown_holds(
    prefect_server: str, env: dict[str, str], deployment: Any, worker: Path, root: Path
) -> None:
    # the flows run here and the worker's runs share one store, one work dir, one capture
    settings = make_settings(root, retraining={"dataset": "taxi", "rows": 1500})
    assert settings.effective_tracking_uri == env["MLOPS_TRACKING_URI"]
    assert settings.work_dir.resolve() == Path(env["MLOPS_WORK_DIR"]).resolve()
    run_training_pipeline(settings, model_name=MODEL, dataset="taxi", rows=1000)  # + baseline
    client = connect(settings)
    assert [str(v.version) for v in client.search_model_versions(f"name='{MODEL}'")] == ["1"]

    # what v1 served on the prod endpoint, captured: normal, then shifted twice
    endpoint = endpoint_name(settings, MODEL, "prod")
    windows = {}
    for name, start, shift, seed in (
        ("normal", T0, 0.0, 1),
        ("shifted", T0 + timedelta(minutes=30), 2.0, 2),
        ("shifted again", T0 + timedelta(minutes=60), 2.0, 3),
    ):
        rows = taxi_rows(int(WINDOW.total_seconds()), shift=shift, seed=seed)
        preds = predict(settings, MODEL, "1", rows)
        write_capture(Path(settings.capture_destination), endpoint, "v1", rows, preds, start)
        windows[name] = {"start": start.isoformat(), "end": (start + WINDOW).isoformat()}

    def monitor(window: str) -> Any:
        return monitoring(MODEL, **windows[window], settings=settings)  # endpoint: prod

    # unshifted traffic, and an event the triggers do not expect: no drift event, no run
    since = datetime.now(UTC)
    emit_model_event(Events.MODEL_APPROVED, MODEL, {"version": "1"})
    quiet = monitor("normal")
    assert quiet.endpoint == endpoint
    assert [(v.version, v.status, v.rows) for v in quiet.versions] == [("1", "ok", 600)], (
        quiet.summary()
    )
    assert not quiet.drift_detected
    _stays_quiet(
        "unshifted traffic emitted drift or started a retraining",
        lambda: _drift_events(prefect_server, since) + _runs(deployment.id),
        QUIET_S,
    )

    # shifted traffic: exactly one drift event, exactly one run started by the automation
    started = time.monotonic()
    drifted = monitor("shifted")
    assert drifted.drift_detected, drifted.summary()
    assert "trip_distance" in drifted.versions[0].drifted_features
    (event,) = _poll(
        "the drift event reached the server",
        lambda: _drift_events(prefect_server, since) or None,
        60,
    )
    (run,) = _poll("a retraining run was created", lambda: _runs(deployment.id) or None, 60)
    assert event["payload"] == drifted.event_payload()
    assert run.parameters["model_name"] == MODEL
    assert run.parameters["reason"] == "drift"
    assert run.parameters["event_id"] == event["id"]
    assert run.parameters["payload"] == event["payload"]  # a dict, not its text
    assert run.parameters["payload"]["window"] == windows["shifted"]
    assert run.parameters["deploy"] is False  # set at deploy time, merged by the server
    done = _poll("the retraining run finished", _finished(run.id, worker), 300, every=2)
    print(f"monitoring → drift → completed retraining in {time.monotonic() - started:.1f} s")

    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{MODEL}'"))
    assert versions == [1, 2]
    new = client.get_model_version(MODEL, "2")
    assert new.tags[Tags.DATA_SOURCE] == "builtin:taxi"
    tags = client.get_registered_model(MODEL).tags
    assert tags[Tags.LAST_RETRAINING_REASON] == f"drift (event {event['id']})"
    _poll("the run logged the new version", _logged(done.id, "registered taxi-retrain v2"), 30)

    # shifted again, same incident (inside `within` and the cooldown): an event, no run
    again = monitor("shifted again")
    assert again.drift_detected, again.summary()
    second_event = _poll(
        "the second drift event reached the server",
        lambda: next(
            (e for e in _drift_events(prefect_server, since) if e["id"] != event["id"]), None
        ),
        60,
    )
    assert second_event["payload"]["window"] == windows["shifted again"]
    assert len(_drift_events(prefect_server, since)) == 2  # one per drifted window, no more

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
    # the second drift event, emitted before the new-data one, started nothing
    assert [r.id for r in _runs(deployment.id)] == [run.id, second.id]
