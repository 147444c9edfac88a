"""Shared fixtures: one real Prefect server per session, MLflow stores in temp dirs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops.settings import Settings

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Variables of the developer's shell that would point tests at real stores.
_LEAKY = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_RUN_ID",
    "MLOPS_CONFIG",
    "PREFECT_API_URL",
    "PREFECT_PROFILE",
)


# Credentials moto accepts; tests pass them in the environment, never real ones.
AWS_TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _store_variable(name: str) -> bool:
    """Variables that point code at a store or settings: ours, and MLflow's own."""
    return name.startswith(("MLOPS_", "MLFLOW_"))


@pytest.fixture(scope="session", autouse=True)
def _no_shell_env() -> Iterator[None]:
    """The developer's shell never points the session (or its session and module fixtures,
    which run before any test's own clean-up) at a real store."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if _store_variable(k) or k in _LEAKY}
    yield
    for name in [k for k in os.environ if _store_variable(k)]:
        del os.environ[name]
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _no_env_leftovers() -> Iterator[None]:
    """What a test left in os.environ outside monkeypatch (MLflow exports MLFLOW_TRACKING_URI
    and MLFLOW_REGISTRY_URI when its URIs are set) goes with it, so the next module's fixtures
    do not inherit another test's store."""
    yield
    for name in [k for k in os.environ if _store_variable(k)]:
        del os.environ[name]


@pytest.fixture(autouse=True)
def _clean_env(_no_env_leftovers: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MLOPS_") or name in _LEAKY:
            monkeypatch.delenv(name, raising=False)
    if "_MLOPS_TEST_PREFECT_API_URL" in os.environ:
        monkeypatch.setenv("PREFECT_API_URL", os.environ["_MLOPS_TEST_PREFECT_API_URL"])


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``prefect server start`` on a free loopback port; yields its API URL."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in _LEAKY},
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    }
    log = (home / "server.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(
                f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}"
            )
        time.sleep(0.3)

    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    os.environ["_MLOPS_TEST_PREFECT_API_URL"] = url
    os.environ["PREFECT_API_URL"] = url
    with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_HOME: str(home)}):
        yield url
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()  # ship queued run logs while the server is still up
    os.environ.pop("_MLOPS_TEST_PREFECT_API_URL", None)
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def make_settings(root: Path, **overrides: object) -> Settings:
    """Settings with every piece of state under ``root``, small and fast training."""
    work_dir = Path(overrides.get("work_dir", root / ".mlops"))  # type: ignore[arg-type]
    values: dict[str, object] = {
        "work_dir": work_dir,
        # Explicit, so a store named by the environment (a variable some library left in
        # os.environ while another test ran) can never be picked up instead.
        "tracking_uri": f"sqlite:///{work_dir.resolve()}/mlflow.db",
        "training": {"n_estimators": 60, "early_stopping_rounds": 10, "n_jobs": 2},
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Fresh settings: SQLite MLflow store and work dir under this test's temp dir."""
    return make_settings(tmp_path)


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings shared by a module's tests (one MLflow store: creating one takes seconds)."""
    return make_settings(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="session")
def trained_taxi(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, str]:
    """A real `taxi` model trained and registered once per session (about 10 s).

    Returns the settings of its store and the registered version (alias ``challenger``).
    Tests must not move its aliases; register their own models for that.
    """
    from mlops.pipelines import run_training_pipeline

    settings = make_settings(tmp_path_factory.mktemp("taxi-store"))
    assert str(tmp_path_factory.getbasetemp()) in settings.effective_tracking_uri
    result = run_training_pipeline(settings, model_name="taxi", dataset="taxi", rows=4000)
    return settings, str(result.registered.version)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 in server mode on loopback for the session (tests use their own buckets)."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
