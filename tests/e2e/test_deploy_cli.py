"""Approval through the real Prefect server: `mlops deploy` pauses, `mlops approve|reject`
answers the same pause from another shell, and the flow goes on (or stops) accordingly."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from mlops.backends.local.gateway.manager import delete_endpoint, list_endpoints
from mlops.pipelines import run_training_pipeline
from mlops.registry import get_alias_version
from mlops.tracking import ALIAS_CHALLENGER, ALIAS_CHAMPION, Tags, connect
from tests.conftest import make_settings
from tests.e2e.test_cli import MLOPS, PROJECT_FILE, _env, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, object]]:
    (tmp_path / "mlops.toml").write_text(PROJECT_FILE)
    settings = make_settings(tmp_path)
    run_training_pipeline(settings, model_name="taxi", dataset="taxi", rows=3000)
    yield tmp_path, settings
    for state in list_endpoints(settings):
        delete_endpoint(settings, state.name)


def _wait_paused(settings, timeout: float = 240) -> str:
    """The flow-run id once the deployment-pipeline run is paused for v1's approval."""
    from prefect import get_client

    client = connect(settings)
    deadline = time.time() + timeout
    while time.time() < deadline:
        run_id = client.get_model_version("taxi", "1").tags.get("mlops.approval_flow_run_id")
        if run_id:
            with get_client(sync_client=True) as prefect:
                run = prefect.read_flow_run(UUID(run_id))
            if run.state is not None and run.state.is_paused():
                return run_id
        time.sleep(1)
    raise AssertionError("the deployment-pipeline run never paused for approval")


def _events(api_url: str, since: str, want: set[str], timeout: float = 60) -> set[str]:
    """Names of the mlops.* events about model taxi since ``since`` (persisted in seconds),
    polled until every name in ``want`` is there or ``timeout`` passed."""
    deadline = time.time() + timeout
    names: set[str] = set()
    while time.time() < deadline:
        page = httpx.post(
            f"{api_url}/events/filter",
            json={
                "filter": {
                    "event": {"prefix": ["mlops."]},
                    "any_resource": {"id": ["mlops.model.taxi"]},
                    "occurred": {"since": since},
                },
                "limit": 50,
            },
            timeout=10,
        )
        page.raise_for_status()
        names = {event["event"] for event in page.json()["events"]}
        if want <= names:
            break
        time.sleep(1)
    return names


def _start_deploy(cwd: Path, api_url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(MLOPS), "deploy", "-m", "taxi", "--bake", "0", "--termination-wait", "0"],
        cwd=cwd,
        env=_env(api_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_cli_approval_answers_the_pause_and_prod_gets_the_champion(
    project, prefect_server: str
) -> None:
    cwd, settings = project
    started = datetime.now(UTC).isoformat()
    deploy = _start_deploy(cwd, prefect_server)
    try:
        flow_run_id = _wait_paused(settings)
        # the form the Prefect UI shows: the run input schema with our fields
        from prefect import get_client

        with get_client(sync_client=True) as prefect:
            inputs = prefect.filter_flow_run_input(
                flow_run_id=UUID(flow_run_id),
                key_prefix="paused-",
                limit=10,
                exclude_keys=set(),
            )
        schema = next(i for i in inputs if i.key.endswith("-schema"))
        description = next(i for i in inputs if i.key.endswith("-description"))
        assert "Approve taxi v1 for production?" in description.decoded_value
        assert {"decision", "approver", "comment"} <= set(schema.decoded_value["properties"])
        assert get_alias_version(connect(settings), "taxi", ALIAS_CHAMPION) is None

        answer = run_cli(
            cwd,
            prefect_server,
            "approve",
            "taxi",
            "1",
            "--comment",
            "looks right",
            "--approver",
            "alice",
        )
        assert answer.returncode == 0, answer.stderr
        assert f"answered the approval pause of deployment-pipeline run {flow_run_id}" in " ".join(
            answer.stdout.split()
        )
        output, _ = deploy.communicate(timeout=300)
    finally:
        if deploy.poll() is None:
            deploy.kill()
    assert deploy.returncode == 0, output
    assert "created taxi-prod serving v1" in output
    mv = connect(settings).get_model_version("taxi", "1")
    assert mv.tags[Tags.APPROVAL] == "approved"
    assert mv.tags[Tags.APPROVED_BY] == "alice"
    assert mv.tags[Tags.APPROVAL_COMMENT] == "looks right"
    assert "mlops.approval_flow_run_id" not in mv.tags
    assert str(get_alias_version(connect(settings), "taxi", ALIAS_CHAMPION).version) == "1"
    # the flow told Prefect's event bus (automations trigger on these)
    wanted = {"mlops.approval.requested", "mlops.model.approved", "mlops.rollout.completed"}
    assert wanted <= _events(prefect_server, started, wanted)
    # the synthetic canary probes the prod endpoint through the synthetic-canary flow
    probe = run_cli(
        cwd, prefect_server, "probe", "-m", "taxi", "--requests", "3", "--interval", "0.1"
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert "taxi-prod: 3/3 succeeded (100%; alarm below 90%)" in " ".join(probe.stdout.split())
    # the dev evaluation went through the endpoint and was logged
    runs = connect(settings).search_runs(
        [connect(settings).get_experiment_by_name("taxi/deployments").experiment_id],
        filter_string="tags.`mlops.stage` = 'endpoint-evaluation'",
    )
    assert runs and runs[0].data.metrics["endpoint_rmse"] > 0


def test_cli_rejection_stops_the_flow_and_keeps_champion(project, prefect_server: str) -> None:
    cwd, settings = project
    deploy = _start_deploy(cwd, prefect_server)
    try:
        _wait_paused(settings)
        answer = run_cli(cwd, prefect_server, "reject", "taxi", "1", "--comment", "too slow")
        assert answer.returncode == 0, answer.stderr
        output, _ = deploy.communicate(timeout=300)
    finally:
        if deploy.poll() is None:
            deploy.kill()
    assert deploy.returncode == 0, output
    assert "rejected: nothing rolled out" in output
    client = connect(settings)
    assert client.get_model_version("taxi", "1").tags[Tags.APPROVAL] == "rejected"
    assert get_alias_version(client, "taxi", ALIAS_CHAMPION) is None
    assert get_alias_version(client, "taxi", ALIAS_CHALLENGER) is None
    assert [s.name for s in list_endpoints(settings)] == ["taxi-dev"]
