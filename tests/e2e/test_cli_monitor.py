"""``mlops ground-truth add``, ``mlops monitor`` and ``mlops status`` as a user runs them.

The commands are subprocesses of the console script on the session's trained ``taxi`` model
(its MLflow store) with a work dir of their own, passed as ``MLOPS_WORK_DIR`` /
``MLOPS_TRACKING_URI``. The capture they read is written in SageMaker's layout with the
model's own predictions on shifted traffic, as a live endpoint would have left it; the
monitoring flow runs in-process against the session's Prefect server.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops.backends.local.gateway.state import EndpointState, VariantState, save_state
from mlops.settings import Settings
from mlops.tracking import Events, connect, model_resource_id
from tests.capture_helpers import predict, taxi_rows, write_capture
from tests.conftest import make_settings
from tests.e2e.test_cli import run_cli

pytestmark = pytest.mark.slow

ENDPOINT = "taxi-cli"  # capture only: no local endpoint of that name
STOPPED = "taxi-stopped"  # a local endpoint that was created and is stopped
LABELLED = 150


def _error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


class Project:
    """The CLI's folder and environment, the capture written for it, and the window."""

    def __init__(self, folder: Path, settings: Settings, version: str, api_url: str) -> None:
        self.folder = folder
        self.settings = settings
        self.version = version
        self.api_url = api_url
        # three hours back, on the hour: labels written now come after the window's start
        self.start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(
            hours=3
        )
        self.end = self.start + timedelta(hours=1)
        self.ids: list[str] = []
        self.labels: list[float] = []

    @property
    def capture(self) -> Path:
        return Path(self.settings.capture_destination)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(
            self.folder,
            self.api_url,
            *args,
            MLOPS_WORK_DIR=str(self.settings.work_dir),
            MLOPS_TRACKING_URI=self.settings.effective_tracking_uri,
        )

    def window_args(self) -> list[str]:
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        return ["--start", self.start.strftime(fmt), "--end", self.end.strftime(fmt)]


@pytest.fixture(scope="module")
def project(
    trained_taxi: tuple[Settings, str],
    prefect_server: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Project:
    store, version = trained_taxi
    folder = tmp_path_factory.mktemp("cli-monitor")
    settings = make_settings(folder, tracking_uri=store.effective_tracking_uri)
    proj = Project(folder, settings, version, prefect_server)
    frame = taxi_rows(400, shift=2.0, seed=11)  # every feature far from training
    proj.ids = write_capture(
        proj.capture,
        ENDPOINT,
        f"v{version}",
        frame,
        predict(settings, "taxi", version, frame),
        proj.start + timedelta(minutes=5),
    )
    proj.labels = [float(v) for v in frame["total_amount"]]
    # what `mlops endpoint stop` leaves: the state file, no gateway, no model server
    save_state(
        settings.endpoints_dir,
        EndpointState(
            name=STOPPED,
            port=1,
            status="OutOfService",
            variants=[
                VariantState(
                    name=f"v{version}",
                    model_ref=f"models:/taxi/{version}",
                    model_name="taxi",
                    model_version=version,
                    model_dir=str(folder / "unused-model-dir"),
                    status="Failed",
                )
            ],
        ),
    )
    return proj


@pytest.fixture(scope="module")
def labels_added(project: Project) -> subprocess.CompletedProcess[str]:
    """`mlops ground-truth add` with labels for some captured ids and 2 unknown ids."""
    rows = [
        f"{i},{label:.4f}"
        for i, label in zip(project.ids[:LABELLED], project.labels[:LABELLED], strict=True)
    ]
    rows += ["req-never-served-1,12.5", "req-never-served-2,3.0"]
    path = project.folder / "labels.csv"
    path.write_text("inference_id,label\n" + "\n".join(rows) + "\n")
    return project.run("ground-truth", "add", "--endpoint", ENDPOINT, str(path))


@pytest.fixture(scope="module")
def monitored(
    project: Project, labels_added: subprocess.CompletedProcess[str]
) -> tuple[subprocess.CompletedProcess[str], datetime]:
    """`mlops monitor` over the window, after the labels arrived; and when it started."""
    assert labels_added.returncode == 0, labels_added.stderr[-3000:]
    started = datetime.now(UTC) - timedelta(seconds=5)
    proc = project.run("monitor", "--model", "taxi", "--endpoint", ENDPOINT, *project.window_args())
    return proc, started


def test_ground_truth_add_stores_labels_in_sagemakers_layout(
    project: Project, labels_added: subprocess.CompletedProcess[str]
) -> None:
    assert labels_added.returncode == 0, labels_added.stderr[-3000:]
    assert "Traceback" not in labels_added.stderr
    assert f"stored {LABELLED + 2} labels for {ENDPOINT} in " in labels_added.stdout
    files = sorted((project.capture / "groundtruth").rglob("*.jsonl"))
    assert len(files) == 1
    relative = files[0].relative_to(project.capture).as_posix()
    assert re.fullmatch(r"groundtruth/\d{4}/\d{2}/\d{2}/\d{2}/[^/]+\.jsonl", relative), relative
    assert str(files[0]) in labels_added.stdout.replace("\n", "")
    records = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert len(records) == LABELLED + 2
    first = records[0]
    assert first["eventMetadata"]["eventId"] == project.ids[0]
    assert first["groundTruthData"] == {"data": f"{project.labels[0]:.4f}", "encoding": "CSV"}
    assert first["eventVersion"] == "0"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("header.csv", "request,fare,extra\nr-1,2.0,x\n"),  # no id column
        ("short-row.csv", "inference_id,label\nr-1\n"),
        ("commas.csv", ",,\n , \n"),  # only empty cells
    ],
)
def test_ground_truth_add_refuses_a_malformed_file_in_one_line(
    project: Project, name: str, text: str
) -> None:
    path = project.folder / name
    path.write_text(text)
    before = set((project.capture / "groundtruth").rglob("*.jsonl"))
    proc = project.run("ground-truth", "add", "--endpoint", ENDPOINT, str(path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = _error_lines(proc)
    assert str(path) in line
    assert set((project.capture / "groundtruth").rglob("*.jsonl")) == before  # nothing written


def test_monitor_reports_drift_accuracy_and_the_event(
    project: Project, monitored: tuple[subprocess.CompletedProcess[str], datetime]
) -> None:
    proc, started = monitored
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    assert f"taxi on {ENDPOINT}, window {project.start.isoformat()}" in out
    (line,) = [ln for ln in out.splitlines() if ln.strip().startswith(f"v{project.version} ")]
    assert f"v{project.version} drift: drift in " in line
    assert "(400 rows)" in line
    accuracy = [ln for ln in out.splitlines() if "accuracy on" in ln]
    assert accuracy and f"accuracy on {LABELLED} labelled rows: " in accuracy[0]
    assert "rmse " in accuracy[0] and "ground_truth" not in accuracy[0]
    (run_id,) = re.findall(r"MLflow run ([0-9a-f]{32})", out)
    assert "mlops.drift.detected emitted" in out

    run = connect(project.settings).get_run(run_id)
    assert run.data.tags["mlops.stage"] == "monitoring"
    assert run.data.tags["mlops.drift.detected"] == "true"
    assert run.data.metrics["accuracy_ground_truth_unknown_ids"] == 2

    event = _poll(lambda: _drift_event(project.api_url, started, run_id))
    assert event["payload"]["endpoint"] == ENDPOINT
    assert event["payload"]["versions"] == [project.version]


def _drift_event(api_url: str, since: datetime, run_id: str) -> dict[str, Any] | None:
    page = httpx.post(
        f"{api_url}/events/filter",
        json={
            "filter": {
                "event": {"name": [Events.DRIFT_DETECTED]},
                "any_resource": {"id": [model_resource_id("taxi")]},
                "occurred": {"since": since.isoformat()},
            },
            "limit": 50,
        },
        timeout=10,
    )
    page.raise_for_status()
    found = [e for e in page.json()["events"] if run_id in e["payload"]["report_run_ids"]]
    return found[0] if found else None


def _poll(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while (found := check()) is None:
        assert time.monotonic() < deadline, "the drift event did not reach the Prefect server"
        time.sleep(0.5)
    return found


def test_monitor_unknown_model_lists_known_models(project: Project) -> None:
    proc = project.run("monitor", "--model", "no-such-model", "--endpoint", ENDPOINT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = _error_lines(proc)
    assert "'no-such-model' does not exist" in line
    assert re.search(r"known models: .*\btaxi\b", line), line


def test_monitor_unknown_endpoint_lists_endpoints(project: Project) -> None:
    proc = project.run("monitor", "--model", "taxi", "--endpoint", "no-such-endpoint")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = _error_lines(proc)
    assert "'no-such-endpoint'" in line
    assert f"endpoints: {STOPPED}" in line


def test_monitor_refuses_since_with_start(project: Project) -> None:
    proc = project.run(
        "monitor", "--model", "taxi", "--endpoint", ENDPOINT, "--since", "1h",
        "--start", "2026-01-01T00:00:00Z",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = _error_lines(proc)
    assert "either --since or --start/--end, not both" in line


def test_status_shows_the_last_monitoring(
    project: Project, monitored: tuple[subprocess.CompletedProcess[str], datetime]
) -> None:
    assert monitored[0].returncode == 0, monitored[0].stderr[-3000:]
    proc = project.run("status")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = [ln for ln in proc.stdout.splitlines() if re.match(r"\W*taxi\s", ln)]
    assert f"v{project.version} drift" in row
    # rich markup is escaped: the endpoint's status in brackets is printed as it is
    assert f"{STOPPED} [OutOfService]: v{project.version}=v{project.version} 100%" in row

    as_json = project.run("status", "--json")
    assert as_json.returncode == 0, as_json.stderr[-3000:]
    rows = json.loads(as_json.stdout)
    (taxi,) = [r for r in rows if r["model_name"] == "taxi"]
    assert taxi["last_monitoring"] and f"v{project.version} drift" in taxi["last_monitoring"]
    assert taxi["challenger"].startswith(f"v{project.version} (")
    assert taxi["endpoints"] == [
        f"{STOPPED} [OutOfService]: v{project.version}=v{project.version} 100%"
    ]


def test_monitor_as_a_processing_job_reports_the_same(
    project: Project, monitored: tuple[subprocess.CompletedProcess[str], datetime]
) -> None:
    here, _ = monitored
    assert here.returncode == 0, here.stderr[-3000:]
    jobs = Path(project.settings.work_dir, "jobs")
    before = set(jobs.iterdir()) if jobs.exists() else set()
    proc = project.run(
        "monitor", "--model", "taxi", "--endpoint", ENDPOINT, *project.window_args(), "--as-job"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    (new_job,) = set(jobs.iterdir()) - before  # one processing job ran the monitor
    assert new_job.name.startswith("monitor-taxi-")
    assert (new_job / "config" / "processingjobconfig.json").exists()

    def version_line(out: str) -> str:
        (line,) = [ln for ln in out.splitlines() if ln.strip().startswith(f"v{project.version} ")]
        return line

    assert version_line(proc.stdout) == version_line(here.stdout)
    (run_id,) = re.findall(r"MLflow run ([0-9a-f]{32})", proc.stdout)
    assert run_id not in here.stdout  # the job logged its own monitoring run
    assert connect(project.settings).get_run(run_id).data.tags["mlops.stage"] == "monitoring"
