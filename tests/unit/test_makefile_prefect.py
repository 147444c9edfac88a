"""`make prefect-ui PREFECT_PORT=N` serves the UI on N and tells it N's API URL; `make deploy`
and `make worker` talk to the same port."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAMP = ".venv/.installed"  # assumed up to date: the tests run in the installed environment

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MAKE"))}
    # a shell that exported the default server's URL (as the README's example does)
    env["PREFECT_API_URL"] = "http://127.0.0.1:4200/api"
    return {**env, **extra}


def _dry_run(*args: str) -> str:
    done = subprocess.run(
        ["make", "-n", "-C", str(REPO), "-o", STAMP, *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_prefect_ui_on_another_port_tells_the_ui_that_port() -> None:
    out = _dry_run("prefect-ui", "PREFECT_PORT=4300")
    assert "prefect server start --host 127.0.0.1 --port 4300" in out
    assert "PREFECT_UI_API_URL=http://127.0.0.1:4300/api" in out
    assert "PREFECT_SERVER_API_PORT=4300" in out
    assert "4200" not in out  # the exported URL of another server is not used


def test_prefect_ui_defaults_to_4200() -> None:
    out = _dry_run("prefect-ui")
    assert "--port 4200" in out and "PREFECT_UI_API_URL=http://127.0.0.1:4200/api" in out


@pytest.mark.parametrize("target", ["deploy", "worker"])
def test_deploy_and_worker_use_the_port_named_on_the_command_line(target: str) -> None:
    out = _dry_run(target, "PREFECT_PORT=4300")
    assert "PREFECT_API_URL=http://127.0.0.1:4300/api" in out and "4200" not in out
    # without a port, an exported PREFECT_API_URL still names the server
    assert "PREFECT_API_URL=http://127.0.0.1:4200/api" in _dry_run(target)
    explicit = _dry_run(target, "PREFECT_PORT=4300", "PREFECT_API_URL=http://prefect.example/api")
    assert "PREFECT_API_URL=http://prefect.example/api" in explicit


@pytest.mark.slow
def test_the_started_ui_calls_its_own_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        ["make", "-C", str(REPO), "-o", STAMP, "prefect-ui", f"PREFECT_PORT={port}",
         f"PREFECT_HOME={tmp_path / 'home'}"],
        env=_env(PREFECT_SERVER_ANALYTICS_ENABLED="false"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui-settings", timeout=2) as r:
                    settings = json.loads(r.read())
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "server.log").read_text()[-2000:]) from None
                time.sleep(0.5)
        assert settings["api_url"] == f"http://127.0.0.1:{port}/api"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # make and the server it started, nothing else
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


# --- environments: `make deploy ENV=prod` on prod's work pool, `make worker ENV=prod` ---

VENV = Path(sys.executable).parent.parent  # the mlops CLI the recipes ask for the pool
PROJECT = """\
work_pool = "base-pool"

[env.prod]
work_pool = "prod-pool"
"""


def _make(*args: str, project: Path, dry_run: bool = True, **extra: str) -> str:
    done = subprocess.run(
        ["make", *(["-n"] if dry_run else []), "-C", str(REPO), "-o", f"{VENV}/.installed",
         f"VENV={VENV}", *args],
        env=_env(MLOPS_CONFIG=str(project), **extra),
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "mlops.toml"
    path.write_text(PROJECT)
    return path


def test_deploy_and_worker_of_an_environment_use_its_work_pool(project: Path) -> None:
    out = _make("deploy", "ENV=prod", project=project)
    assert "prefect work-pool create prod-pool --type process" in out
    assert "MLOPS_WORK_POOL=prod-pool" in out and "deploy --all" in out
    worker = _make("worker", "ENV=prod", project=project)
    assert "MLOPS_ENV=prod" in worker and "prefect worker start --pool prod-pool" in worker
    # without ENV, the project's own pool; WORK_POOL=... names another
    assert "MLOPS_WORK_POOL=base-pool" in _make("deploy", project=project)
    assert "--pool other" in _make("worker", "ENV=prod", "WORK_POOL=other", project=project)


def test_an_environment_without_a_profile_stops_before_deploying(project: Path) -> None:
    done = subprocess.run(
        ["make", "-C", str(REPO), "-o", f"{VENV}/.installed", f"VENV={VENV}", "deploy",
         "ENV=staging"],
        env=_env(MLOPS_CONFIG=str(project)), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "environment 'staging' has no profile" in done.stderr
    assert "no work pool for ENV=staging" in done.stderr
    assert "prefect" not in done.stdout  # nothing was deployed


@pytest.mark.slow
def test_deployments_rendered_for_prod_name_prods_pool(
    project: Path, prefect_server: str, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    _make(
        "deploy", "ENV=prod", f"PREFECT_API_URL={prefect_server}",
        f"PREFECT_HOME={tmp_path / 'home'}", project=project, dry_run=False,
    )  # fmt: skip
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool("prod-pool")
        assert pool.type == "process"
        deployments = {
            d.name: d for d in client.read_deployments() if d.entrypoint.startswith("flows/")
        }
        assert {"monthly", "on-approval", "daily", "hourly", "on-event"} <= set(deployments)
        assert {d.work_pool_name for d in deployments.values()} == {"prod-pool"}
