"""``mlops endpoint create|update --dry-run --json`` on the local backend: the actions the
gateway and the rollout controller would take, in the shape of the SageMaker plan, and
nothing started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app


@pytest.fixture
def local_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLOPS_WORK_DIR", str(tmp_path / ".mlops"))
    monkeypatch.setenv("MLOPS_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    return tmp_path / ".mlops"


def test_local_dry_runs_list_the_actions_and_start_nothing(local_env: Path) -> None:
    runner = CliRunner()
    created = runner.invoke(
        app, ["endpoint", "create", "taxi-dev", "--model", "taxi/3", "--dry-run", "--json"]
    )
    assert created.exit_code == 0, created.output
    (step,) = json.loads(created.output)
    assert (step["service"], step["operation"]) == ("local", "CreateEndpoint")
    assert step["params"]["Variants"][0]["ModelRef"] == "taxi/3"
    assert step["params"]["DataCapture"]["Enabled"] is True
    updated = runner.invoke(
        app,
        ["endpoint", "update", "taxi-dev", "--model", "taxi/4", "--routing", "CANARY",
         "--canary-size", "25", "--dry-run", "--json"],
    )
    assert updated.exit_code == 0, updated.output
    steps = json.loads(updated.output)
    assert [s["operation"] for s in steps] == [
        "AddVariant", "Invoke", "SetWeights", "SetWeights", "RemoveVariant",
    ]
    assert [s["params"]["Weights"]["v4"] for s in steps[2:4]] == [25.0, 100.0]
    assert not (local_env / "endpoints" / "taxi-dev").exists()
    text = runner.invoke(app, ["endpoint", "update", "taxi-dev", "--model", "taxi/4", "--dry-run"])
    assert text.exit_code == 0 and "nothing sent" in text.output
