"""add_to_workspace: one Evidently project per model, a dashboard made once, real values."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.errors import DataError
from mlops.monitoring.report import EvidentlyReport, build_report
from mlops.monitoring.workspace import add_to_workspace, extra_column, extra_panel_title

pytest.importorskip("evidently")

T0 = datetime(2026, 11, 30, 10, 0)


def _report(seed: int, shift: float, title: str) -> EvidentlyReport:
    rng = np.random.default_rng(seed)
    reference = pd.DataFrame({"fare": rng.normal(10, 2, 400), "zone": rng.choice(list("abc"), 400)})
    current = pd.DataFrame(
        {"fare": rng.normal(10 + shift, 2, 300), "zone": rng.choice(list("abd"), 300)}
    )
    return build_report(
        reference, current, numerical=["fare"], categorical=["zone"], sample_rows=200,
        title_context=title,
    )  # fmt: skip


@pytest.fixture(scope="module")
def reports() -> list[EvidentlyReport]:
    return [_report(1, 0.0, "taxi"), _report(2, 2.0, "taxi"), _report(3, 0.5, "mammo")]


def _fill(workspace_dir: Path, reports: list[EvidentlyReport]) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {"taxi": [], "mammo": []}
    runs = [
        ("taxi", reports[0], {"accuracy": 0.91, "requests_blue": 120, "rate_4xx_blue": 0.02}),
        ("taxi", reports[1], {"accuracy": 0.84, "requests_blue": 80, "requests_green": 9}),
        ("mammo", reports[2], {"requests": 7, "accuracy_rmse": 1.5, "accuracy": float("nan")}),
    ]
    for hour, (model, report, extra) in enumerate(runs):
        ids[model].append(
            add_to_workspace(
                workspace_dir, model, report, extra=extra, timestamp=T0 + timedelta(hours=hour)
            )
        )
    return ids


def test_projects_dashboard_and_extras(tmp_path: Path, reports: list[EvidentlyReport]) -> None:
    from evidently.ui.workspace import Workspace

    ids = _fill(tmp_path, reports)
    workspace = Workspace(str(tmp_path))
    projects = {p.name: p for p in workspace.list_projects()}
    assert set(projects) == {"taxi", "mammo"}
    assert {str(s) for s in workspace.list_runs(projects["taxi"].id)} == set(ids["taxi"])
    assert {str(s) for s in workspace.list_runs(projects["mammo"].id)} == set(ids["mammo"])

    taxi = {p.title: p for p in projects["taxi"].dashboard.model().panels}
    assert len(taxi) == len(projects["taxi"].dashboard.model().panels)  # no panel twice
    assert set(taxi) == {
        "Drifted columns (last run)",
        "Share of drifted columns (last run)",
        "Share of drifted columns",
        "Drift score per column",
        "Accuracy",
        "Requests",
        "Error rates",
    }
    # one series per variant in the shared panel, added when the variant first shows up
    assert [v.legend for v in taxi["Requests"].values] == ["requests_blue", "requests_green"]
    mammo = {p.title for p in projects["mammo"].dashboard.model().panels}
    assert {"Requests", "Accuracy: rmse"} <= mammo
    assert "Accuracy" not in mammo  # NaN: not known for that run

    stored = workspace.get_run(projects["taxi"].id, ids["taxi"][1])
    assert stored.timestamp == T0 + timedelta(hours=1)
    assert stored.name == reports[1].title
    means = {
        r.metric_value_location.metric.params["column"]: r.value
        for r in stored.metric_results.values()
        if r.metric_value_location.metric.params["type"].endswith(":MeanValue")
    }
    assert means[extra_column("accuracy")] == 0.84
    assert means[extra_column("requests_green")] == 9.0
    # the report object itself is not changed by the extras
    assert extra_column("accuracy") not in json.dumps(reports[1].to_dict())


def test_extra_panel_titles() -> None:
    assert extra_panel_title("requests") == extra_panel_title("requests_green") == "Requests"
    assert (
        extra_panel_title("rate_4xx_blue") == extra_panel_title("error_rate_5xx") == ("Error rates")
    )
    assert extra_panel_title("latency_p99_blue") == "Latency"
    assert extra_panel_title("accuracy_rmse") == "Accuracy: rmse"
    assert extra_panel_title("rows") == "rows"


def test_bad_extra_and_model_name(tmp_path: Path, reports: list[EvidentlyReport]) -> None:
    with pytest.raises(DataError, match="'accuracy' must be a number"):
        add_to_workspace(tmp_path, "taxi", reports[0], extra={"accuracy": "high"})
    with pytest.raises(DataError, match="model_name"):
        add_to_workspace(tmp_path, " ", reports[0])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _series(base: str, project_id: str, metric: str, labels: dict[str, str]) -> list[Any]:
    series_filter = {
        "metric": f"evidently:metric_v2:{metric}",
        "metric_labels": labels,
        "tags": [],
        "metadata": {},
    }
    body = {"series_filter": [series_filter]}
    request = urllib.request.Request(
        f"{base}/api/v2/snapshots/{project_id}/data_series_batch",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["series"]


@pytest.mark.slow
def test_evidently_ui_serves_the_projects(tmp_path: Path, reports: list[EvidentlyReport]) -> None:
    ids = _fill(tmp_path, reports)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    evidently = Path(sys.executable).parent / "evidently"
    server = subprocess.Popen(
        [str(evidently), "ui", "--workspace", str(tmp_path), "--port", str(port)]
        + ["--host", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                projects = _get(f"{base}/api/projects")
                break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None or time.monotonic() > deadline:
                    out = server.stdout.read().decode() if server.stdout else ""
                    pytest.fail(f"evidently ui did not answer on {base}:\n{out[-3000:]}")
                time.sleep(0.5)
        by_name = {p["name"]: p["id"] for p in projects}
        assert set(by_name) == {"taxi", "mammo"}

        for model, expected in ids.items():
            listed = _get(f"{base}/api/projects/{by_name[model]}/snapshots")
            assert {s["id"] for s in listed} == set(expected)
            assert all(s["metadata"]["mlops.model"] == model for s in listed)

        taxi = by_name["taxi"]
        dashboard = _get(f"{base}/api/v2/dashboards/{taxi}")
        assert "Share of drifted columns" in {p["title"] for p in dashboard["panels"]}
        # the panels' queries return the stored values, oldest first
        (accuracy,) = _series(base, taxi, "MeanValue", {"column": extra_column("accuracy")})
        assert accuracy["values"] == [0.91, 0.84]
        (share,) = _series(base, taxi, "DriftedColumnsCount", {"value_type": "share"})
        assert len(share["values"]) == 2 and share["values"][1] > 0
        per_column = _series(base, taxi, "ValueDrift", {})
        assert {s["params"]["column"] for s in per_column} == {"fare", "zone"}
        (requests,) = _series(base, by_name["mammo"], "MeanValue", {"column": "mlops.requests"})
        assert requests["values"] == [7.0]
        (blue,) = _series(base, taxi, "MeanValue", {"column": extra_column("requests_blue")})
        assert blue["values"] == [120.0, 80.0]

        # the snapshot page carries the report's header
        widgets = _get(f"{base}/api/projects/{taxi}/{ids['taxi'][0]}/data")
        assert reports[0].title in json.dumps(widgets, ensure_ascii=False)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout:
            server.stdout.close()
