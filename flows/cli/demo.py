"""``mlops demo``: the whole loop on the built-in taxi problem, on this machine.

train v1 → deploy (dev → evaluation → approval → prod) → normal traffic, monitored (no drift)
→ shifted traffic, monitored: drift → ``mlops.drift.detected`` → the ``retraining``
deployment from prefect.yaml, triggered by the event on a Prefect server and run by a worker
→ new challenger → deployment pipeline pauses for approval → ``mlops approve`` from a second
process → canary rollout under live traffic → champion.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rich.console import Console
from rich.markup import escape

from mlops.errors import MlopsError

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["run_demo"]

out = Console()
err = Console(stderr=True)

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
MODEL = "taxi"
RATE = 40.0  # requests/s of live traffic
PHASE_ROWS = 600  # rows per traffic phase (15 s at RATE)
# The demo's rollouts bake for seconds, not the five minutes of the default policy, and a
# rerun of the demo may retrain again after a minute.
DEMO_ENV = {
    "MLOPS_ROLLOUT__WAIT_INTERVAL_S": "8",
    "MLOPS_ROLLOUT__TERMINATION_WAIT_S": "2",
    "MLOPS_ROLLOUT__CANARY_SIZE": "20",
    "MLOPS_RETRAINING__COOLDOWN": "60s",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def prefect_server(settings: Settings) -> Iterator[str]:
    """The Prefect server of the demo: ``PREFECT_API_URL`` if set, else one started here.

    Its state lives in ``PREFECT_HOME`` (``make demo`` uses ``.mlops/prefect``), so
    ``make prefect-ui`` shows the demo's runs afterwards.
    """
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    import urllib.request

    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log_path = settings.work_dir / "prefect-server.log"
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise MlopsError(f"the Prefect server did not start; see {log_path}")
        time.sleep(0.5)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
            from prefect.logging.handlers import APILogHandler

            APILogHandler().flush()
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def retraining_worker(settings: Settings) -> Iterator[None]:
    """Deploy ``retraining/on-event`` from prefect.yaml and run a process worker for it."""
    env = {**os.environ, **DEMO_ENV, "PREFECT_WORKER_QUERY_SECONDS": "2"}
    prefect = str(BIN / "prefect")
    probe = subprocess.run(
        [prefect, "work-pool", "inspect", "mlops-local"], env=env, capture_output=True, cwd=REPO
    )
    if probe.returncode != 0:
        subprocess.run(
            [prefect, "work-pool", "create", "mlops-local", "--type", "process"],
            env=env,
            check=True,
            capture_output=True,
            cwd=REPO,
        )
    deployed = subprocess.run(
        [prefect, "--no-prompt", "deploy", "--name", "retraining/on-event"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if deployed.returncode != 0:
        raise MlopsError(
            f"`prefect deploy --name retraining/on-event` failed: {deployed.stdout[-1500:]}"
            f"{deployed.stderr[-1500:]}"
        )
    log_path = settings.work_dir / "prefect-worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [prefect, "worker", "start", "--pool", "mlops-local", "--limit", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    out.print(
        "deployed [bold]retraining/on-event[/] from prefect.yaml (triggers: mlops.drift.detected, "
        f"mlops.data.updated) and started a process worker (log: {escape(str(log_path))})"
    )
    try:
        yield
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def _rows(shift: float, seed: int) -> tuple[list[bytes], list[str], list[str]]:
    """CSV rows of a fresh taxi batch, their inference ids and true fares."""
    from mlops.data.builtin import engineer_features, make_batch

    frame, _ = engineer_features(
        make_batch(MODEL, rows=PHASE_ROWS, shift=shift, seed=seed), "total_amount"
    )
    features = ["duration_minutes", "passenger_count", "trip_distance"]
    lines = frame[features].to_csv(header=False, index=False, lineterminator="\n").splitlines()
    tag = uuid.uuid4().hex[:8]
    ids = [f"demo-{tag}-{i}" for i in range(len(lines))]
    labels = [f"{v:.2f}" for v in frame["total_amount"]]
    return [line.encode() + b"\n" for line in lines], ids, labels


def _send(
    settings: Settings, endpoint: str, rows: list[bytes], ids: list[str]
) -> tuple[datetime, datetime, int]:
    """Send every row once at RATE; return the window it covers and the 200 count."""
    from flows.traffic import EndpointTarget, TrafficGenerator
    from mlops.backends import get_endpoint_backend

    start = datetime.now(UTC).replace(microsecond=0)
    with (
        get_endpoint_backend(settings) as backend,
        TrafficGenerator(
            EndpointTarget(backend, endpoint),
            rows,
            rate=RATE,
            inference_ids=ids,
            repeat=False,
        ) as traffic,
    ):
        traffic.wait(timeout=len(rows) / RATE * 3 + 30)
    time.sleep(2.5)  # capture is flushed about every second
    end = datetime.now(UTC).replace(microsecond=0)
    ok = sum(c.get(200, 0) for c in traffic.statuses.values())
    return start, end, ok


def _monitor(settings: Settings, endpoint: str, start: datetime, end: datetime) -> Any:
    from flows.cli.monitor import show_monitor
    from flows.monitoring import monitoring

    result = monitoring(
        model_name=MODEL,
        endpoint=endpoint,
        start=start.isoformat(),
        end=end.isoformat(),
        settings=settings,
    )
    show_monitor(result, settings)
    return result


def _flow_runs(name: str) -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[name])))


def _wait_for(what: str, check: Any, timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise MlopsError(f"the demo waited {timeout:.0f} s for {what}; see .mlops/prefect-worker.log")


def _retraining_run(since: datetime) -> Any:
    runs = [r for r in _flow_runs("retraining") if r.created and r.created >= since]
    return runs[0] if runs else None


def _read_run(run_id: Any) -> Any:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def _champion(settings: Settings) -> str | None:
    from mlflow.exceptions import MlflowException

    from mlops.tracking import ALIAS_CHAMPION, connect

    try:
        version = connect(settings).get_registered_model(MODEL).aliases.get(ALIAS_CHAMPION)
    except MlflowException:  # no model yet
        return None
    return None if version is None else str(version)


def _challenger() -> str | None:
    from mlops.registry import get_alias_version
    from mlops.settings import load_settings
    from mlops.tracking import ALIAS_CHALLENGER, connect

    mv = get_alias_version(connect(load_settings()), MODEL, ALIAS_CHALLENGER)
    return str(mv.version) if mv is not None else None


def _paused_version(known: set[str]) -> str | None:
    """The new version whose deployment-pipeline run is paused for approval."""
    from flows.cli import _paused_approval

    version = _challenger()
    if version is None or version in known:
        return None
    return version if _paused_approval(MODEL, version) else None


def run_demo(
    settings: Settings,
    *,
    rows: int,
    verbose: bool,
    keep_endpoints: bool,
    train_first: Any,
    until: Literal["deploy", "end"] = "end",
) -> None:
    """The loop after ``train_first`` registered v1 (see the module docstring); with
    ``until="deploy"`` it stops after the first deployment (the champion serves on prod)."""
    from flows.cli.deploy import echo_progress, run_first_deployment
    from flows.traffic import EndpointTarget, TrafficGenerator
    from mlops.backends import get_endpoint_backend
    from mlops.stages.deploy import endpoint_name, reference_rows, start_if_stopped
    from mlops.tracking import ALIAS_CHAMPION, connect

    for key, value in DEMO_ENV.items():
        os.environ.setdefault(key, value)
    try:
        with prefect_server(settings) as api_url:
            out.print(f"Prefect server: {escape(api_url)}")
            if _champion(settings) is None:
                run_first_deployment(settings, verbose, first_version=train_first())
            else:  # an earlier demo shipped one: retraining it on the same data may fail the
                # gate against the retrained champion, so the loop goes on from the champion
                out.print(
                    f"[bold]{MODEL} v{_champion(settings)} is champion[/] from an earlier demo; "
                    "going on from there"
                )
            prod = endpoint_name(settings, MODEL, "prod")
            if until == "deploy":
                champion = connect(settings).get_registered_model(MODEL).aliases[ALIAS_CHAMPION]
                out.print(f"\n[bold green]taxi v{champion} is champion[/] on {prod}; stopping here")
                return
            backend = get_endpoint_backend(settings)
            start_if_stopped(backend, backend.describe_endpoint(prod))
            known = {
                str(v.version) for v in connect(settings).search_model_versions(f"name='{MODEL}'")
            }
            with retraining_worker(settings):
                out.print(
                    f"\n[bold]Normal traffic[/]: {PHASE_ROWS} requests to {prod} at {RATE:.0f}/s"
                )
                start, end, ok = _send(settings, prod, *_rows(0.0, seed=11)[:2])
                out.print(f"{ok}/{PHASE_ROWS} answered 200; monitoring that window:")
                with echo_progress(verbose):
                    _monitor(settings, prod, start, end)

                out.print(
                    f"\n[bold]Shifted traffic[/]: {PHASE_ROWS} longer trips with more passengers "
                    "(the next month's), then their true fares arrive as ground truth"
                )
                rows_, ids, labels = _rows(1.5, seed=12)
                start, end, ok = _send(settings, prod, rows_, ids)
                from mlops.capture import write_ground_truth

                written = write_ground_truth(
                    backend.describe_endpoint(prod).capture.destination
                    or settings.capture_destination,
                    list(zip(ids, labels, strict=True)),
                )
                out.print(
                    f"{ok}/{PHASE_ROWS} answered 200; {len(labels)} labels stored in "
                    f"{escape(written)}"
                )
                triggered_after = datetime.now(UTC)
                with echo_progress(verbose):
                    result = _monitor(settings, prod, start, end)
                if not result.drift_detected:
                    out.print("[yellow]no drift detected this time: the loop stops here[/]")
                    return
                run = _wait_for(
                    "the retraining run created by the trigger",
                    lambda: _retraining_run(triggered_after),
                    90,
                )
                out.print(
                    f"\n[bold]Retraining[/]: the event triggered flow run {escape(run.name)} of "
                    "retraining/on-event (trains on the source plus the labelled capture, "
                    "registers a challenger, then runs deployment-pipeline)"
                )
                version = _wait_for(
                    "the new version's approval pause",
                    lambda: _paused_version(known),
                    600,
                    every=2.0,
                )
                out.print(
                    f"deployment-pipeline paused: taxi v{version} waits for approval (form in the "
                    f"Prefect UI). Answering from a second process: mlops approve {MODEL} {version}"
                )
                body, _ = reference_rows(settings, MODEL, version, 200)
                live = [line + b"\n" for line in body.splitlines()]
                with TrafficGenerator(EndpointTarget(backend, prod), live, rate=RATE) as traffic:
                    subprocess.run(
                        [
                            str(BIN / "mlops"),
                            "approve",
                            MODEL,
                            version,
                            "--comment",
                            "demo: dev metrics match training",
                        ],
                        check=True,
                    )
                    final = _wait_for(
                        "the retraining run to finish",
                        lambda: (r := _read_run(run.id)).state and r.state.is_final() and r,
                        600,
                        every=2.0,
                    )
                counts = ", ".join(
                    f"{variant}: {sum(c.values())} ({c.get(200, 0)} ok)"
                    for variant, c in sorted(traffic.statuses.items())
                )
                out.print(f"retraining run {escape(final.name)}: {escape(final.state.name)}")
                out.print(f"live traffic during the rollout, answered by variant: {counts}")
            champion = connect(settings).get_registered_model(MODEL).aliases.get(ALIAS_CHAMPION)
            out.print(f"\n[bold green]taxi v{champion} is champion[/] on {prod}")
    finally:
        _finish(settings, keep_endpoints)
    from flows.cli.monitor import status

    status(json_output=False)


def _finish(settings: Settings, keep_endpoints: bool) -> None:
    from mlops.backends import EndpointProcesses, get_endpoint_backend

    with get_endpoint_backend(settings) as backend:
        if keep_endpoints or not isinstance(backend, EndpointProcesses):
            for state in backend.list_endpoints():
                out.print(f"endpoint {state.name}: {state.url}/invocations")
            return
        for state in backend.list_endpoints():
            backend.stop_endpoint(state.name)
    out.print(
        "endpoints stopped (state kept): `mlops endpoint start taxi-prod` serves again, "
        "`mlops endpoint list` shows them"
    )
