"""``mlops cleanup MODEL`` on the local backend, with real gateways and model servers.

An endpoint whose variants all serve the model goes with its processes; on an endpoint
shared with another model only the model's variant goes; nothing is removed when the
question is answered no.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from mlops.backends import VariantSpec, get_endpoint_backend
from mlops.settings import Settings
from mlops.stages.cleanup import plan_cleanup
from tests.conftest import make_settings

pytestmark = pytest.mark.slow


def _reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=5) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def test_cleanup_removes_the_models_endpoints_and_processes_after_asking(
    trained_taxi: tuple[Settings, str],
    second_ref: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, version = trained_taxi
    settings = make_settings(tmp_path, tracking_uri=store.effective_tracking_uri)
    taxi = f"models:/taxi/{version}"
    with get_endpoint_backend(settings) as backend:
        only = backend.create_endpoint("cl-only", [VariantSpec("t1", taxi)])
        shared = backend.create_endpoint(
            "cl-shared",
            [VariantSpec("t1", taxi), VariantSpec("other", second_ref, initial_weight=1.0)],
        )
    assert only.url and shared.url and _reachable(only.url)

    plan = plan_cleanup(settings, "taxi")
    assert [(r.kind, r.name) for r in plan.resources] == [
        ("endpoint", "cl-only"),
        ("variant", "cl-shared/t1"),
    ]

    monkeypatch.setenv("MLOPS_WORK_DIR", str(settings.work_dir))
    monkeypatch.setenv("MLOPS_TRACKING_URI", settings.effective_tracking_uri)
    runner = CliRunner()
    declined = runner.invoke(app, ["cleanup", "taxi"], input="n\n")
    assert declined.exit_code != 0, declined.output
    assert "cl-only" in declined.output and "nothing removed" in declined.output
    assert _reachable(only.url)

    done = runner.invoke(app, ["cleanup", "taxi", "--yes"])
    assert done.exit_code == 0, done.output
    assert "removed endpoint cl-only" in done.output
    assert "removed variant cl-shared/t1" in done.output
    assert not _reachable(only.url)  # the gateway process is gone
    with get_endpoint_backend(settings) as backend:
        names = [e.name for e in backend.list_endpoints()]
        assert names == ["cl-shared"]
        left = backend.describe_endpoint("cl-shared")
        assert [v.name for v in left.variants] == ["other"]
        assert _reachable(shared.url)  # the other model still serves
        again = runner.invoke(app, ["cleanup", "taxi"])
        assert again.exit_code == 0 and "nothing to clean up" in again.output
        backend.delete_endpoint("cl-shared")
