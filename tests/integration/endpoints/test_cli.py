"""``mlops endpoint ...`` end to end: real gateway and model server, settings from MLOPS_*."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from flows.cli.endpoints import endpoint_app
from mlops.backends.local.gateway.processes import pid_alive
from mlops.errors import ConfigError, EndpointError, EndpointNotFoundError
from mlops.settings import Settings

pytestmark = pytest.mark.slow


def test_endpoint_commands(
    ep_settings: Settings,
    taxi_ref: str,
    csv_rows: list[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLOPS_WORK_DIR", str(ep_settings.work_dir))
    monkeypatch.setenv("MLOPS_TRACKING_URI", ep_settings.effective_tracking_uri)
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(endpoint_app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    created = run("create", "cli-ep", "--model", taxi_ref, "--variant", "v1", "--no-capture")
    assert "InService" in created and "v1" in created
    try:
        described = json.loads(run("describe", "cli-ep", "--json"))
        assert described["status"] == "InService" and described["capture"]["enabled"] is False
        assert "cli-ep" in run("list")
        row = csv_rows[0].decode().strip()
        answer = run("invoke", "cli-ep", "--body", row)
        assert answer.startswith("200 variant=v1")
        assert 1.0 < float(answer.splitlines()[-1]) < 500.0
        with pytest.raises(EndpointError, match="answered HTTP 400"):
            runner.invoke(
                endpoint_app,
                ["invoke", "cli-ep", "--body", row, "--target-variant", "v9"],
                catch_exceptions=False,
            )
        assert "v1=0" in run("update-weights", "cli-ep", "v1=0")
        assert "v1=1 (100%)" in run("update-weights", "cli-ep", "v1=1")
        assert "OutOfService" in run("stop", "cli-ep")
        assert not pid_alive(described["gateway_pid"])
        assert "InService" in run("start", "cli-ep")
        assert run("invoke", "cli-ep", "--body", row).startswith("200 variant=v1")
    finally:
        run("delete", "cli-ep")
    with pytest.raises(EndpointNotFoundError):
        runner.invoke(endpoint_app, ["describe", "cli-ep"], catch_exceptions=False)
    assert not (ep_settings.endpoints_dir / "cli-ep").exists()


def test_endpoint_update_rolls_out_another_version(
    ep_settings: Settings,
    taxi_ref: str,
    second_ref: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`endpoint update` is UpdateEndpoint with a blue/green policy, on any endpoint."""
    monkeypatch.setenv("MLOPS_WORK_DIR", str(ep_settings.work_dir))
    monkeypatch.setenv("MLOPS_TRACKING_URI", ep_settings.effective_tracking_uri)
    runner = CliRunner()
    second = second_ref.removeprefix("models:/")  # NAME/VERSION of another registered model

    def run(*args: str) -> str:
        result = runner.invoke(endpoint_app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    run("create", "upd-ep", "--model", taxi_ref, "--variant", "v1", "--no-capture")
    try:
        updated = run(
            "update",
            "upd-ep",
            "--model",
            second,
            "--routing",
            "ALL_AT_ONCE",
            "--bake",
            "0",
            "--termination-wait",
            "0",
            "--no-require-traffic",
        )
        green = second.replace("/", "-v")  # same version number as blue: named apart
        assert f"rollout upd-ep v1 → {green}: completed" in updated
        described = json.loads(run("describe", "upd-ep", "--json"))
        assert [(v["name"], v["model_ref"]) for v in described["variants"]] == [(green, second_ref)]
        again = run("update", "upd-ep", "--model", second, "--no-require-traffic")
        assert "nothing to do" in again
        with pytest.raises(ConfigError, match=r"type: Input should be 'ALL_AT_ONCE'"):
            runner.invoke(
                endpoint_app,
                ["update", "upd-ep", "--model", second, "--routing", "ALL-AT-ONCE"],
                catch_exceptions=False,
            )
    finally:
        run("delete", "upd-ep")
