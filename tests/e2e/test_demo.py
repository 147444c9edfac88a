"""`mlops demo` as a user runs it in an empty project folder, up to its first deployment
(`--until deploy`; the whole loop takes minutes and is what `make demo` shows)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.deployment import DEMO_APPROVER
from mlops.backends.local.gateway.manager import delete_endpoint, list_endpoints
from mlops.registry import get_alias_version
from mlops.tracking import ALIAS_CHAMPION, Tags, connect, deployments_experiment
from tests.conftest import make_settings
from tests.e2e.test_cli import PROJECT_FILE, run_cli

pytestmark = pytest.mark.slow


def test_demo_trains_and_ships_v1_to_prod(tmp_path: Path, prefect_server: str) -> None:
    (tmp_path / "mlops.toml").write_text(PROJECT_FILE)
    settings = make_settings(tmp_path)  # the project's own store: .mlops/ in the folder
    try:
        proc = run_cli(
            tmp_path, prefect_server, "demo", "--rows", "3000", "--until", "deploy", timeout=600
        )
        said = " ".join(proc.stdout.split())
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        assert "Traceback" not in proc.stderr
        assert "mlops demo: NYC green-taxi fares, 3000 trips" in said
        assert "Deploy v1: dev endpoint → evaluation through it → approval" in said
        assert "taxi v1 is champion on taxi-prod; stopping here" in said
        assert "Normal traffic" not in said  # it stopped where it said
        assert "endpoints stopped (state kept)" in said

        client = connect(settings)
        assert [int(v.version) for v in client.search_model_versions("name='taxi'")] == [1]
        assert str(get_alias_version(client, "taxi", ALIAS_CHAMPION).version) == "1"
        v1 = client.get_model_version("taxi", "1")
        assert v1.tags[Tags.APPROVAL] == "approved"
        assert v1.tags[Tags.APPROVED_BY] == DEMO_APPROVER
        endpoints = {s.name: s for s in list_endpoints(settings)}
        assert sorted(endpoints) == ["taxi-dev", "taxi-prod"]
        prod = endpoints["taxi-prod"]
        assert [(v.name, v.model_version) for v in prod.variants] == [("v1", "1")]
        assert all(s.status == "OutOfService" for s in endpoints.values())  # stopped at the end
        experiment = client.get_experiment_by_name(deployments_experiment("taxi")).experiment_id
        runs = client.search_runs([experiment])
        evaluations = [r for r in runs if r.data.tags.get(Tags.STAGE) == "endpoint-evaluation"]
        assert [r.data.tags["mlops.endpoint_evaluation"] for r in evaluations] == ["passed"]
        outcomes = {r.data.tags.get(Tags.ROLLOUT_REASON) for r in runs}
        assert "created taxi-prod serving v1" in outcomes
    finally:
        for state in list_endpoints(settings):
            delete_endpoint(settings, state.name)
