"""Model-server throughput and latency: ours direct, through an endpoint, and mlflow.

In a temp dir: train and register ``taxi`` (``run_training_pipeline``), start

  direct    ``python -m mlops.serving --model models:/taxi/1`` (default workers: one per
            core), data capture on at 100% to a temp folder;
  endpoint  a local endpoint (``mlops.backends.local.gateway.manager.create_endpoint``) with
            one variant of the same model at weight 1 and capture at 100% to another folder:
            the path users and rollouts take (gateway, then the variant's model server);
  mlflow    ``mlflow models serve -m models:/taxi/1 --env-manager local`` with as many
            workers (``--mlflow-workers`` to change), the same tracking store;

check that all answer the same prediction, then drive each in turn with
``wrk -t2 -c16 -d10s --latency`` POSTing one CSV row (``text/csv``, with the header line
that MLflow's CSV parser needs; ours gets the same body); with ``--rounds N`` each server
N times, interleaved, and the run of median throughput counts (on a shared machine a busy
spell then hits every server alike). Reports requests/s, p50 and p99 side by side and the
ratios against their targets:

  direct     throughput direct/mlflow >= 5, p99 direct/mlflow <= 0.2; absolute >= 1400
             requests/s with p99 <= 26 ms;
  endpoint   throughput endpoint/direct >= 0.70, p99 endpoint/direct <= 2,
             throughput endpoint/mlflow >= 5;

non-2xx answers, and whether each capture holds one record per request wrk completed
(after a SIGTERM, or the endpoint's stop, that flushes it); for the endpoint also whether
its admin API counted every request in the variant's metrics.

    .venv/bin/python benchmarks/serving.py [--duration 10] [--connections 16] [--rows 5000]
        [--rounds 1] [--skip-endpoint] [--skip-mlflow]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
BODY = "duration_minutes,passenger_count,trip_distance\n14.5,2,3.1\n"
RUN_ID = "wrk-main"
LUA = """
wrk.method = "POST"
wrk.body = "{body}"
wrk.headers["Content-Type"] = "text/csv"
wrk.headers["X-Amzn-SageMaker-Inference-Id"] = "{inference_id}"
"""


@dataclass
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: str
    raw: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ping(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> float:
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as resp:
                if resp.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready in {timeout}s: {log.read_text()[-3000:]}")


def post(url: str, body: str, accept: str) -> bytes:
    request = urllib.request.Request(
        f"{url}/invocations",
        data=body.encode(),
        headers={
            "Content-Type": "text/csv",
            "Accept": accept,
            "X-Amzn-SageMaker-Inference-Id": "sanity",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return resp.read()


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, script: Path, threads: int, connections: int, duration: int) -> WrkResult:
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(script),
        f"{url}/invocations",
    ]
    raw = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", raw)[1])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", raw)[1])
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s|m)\b", raw)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s|m)\b", raw)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", raw)
    errors = re.search(r"Socket errors: (.*)", raw)
    return WrkResult(
        requests=requests,
        rps=rps,
        p50_ms=_ms(*p50.groups()),
        p99_ms=_ms(*p99.groups()),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        errors=errors[1] if errors else "none",
        raw=raw,
    )


def write_script(folder: Path, inference_id: str) -> Path:
    path = folder / f"{inference_id}.lua"
    body = BODY.replace("\n", "\\n")
    path.write_text(LUA.format(body=body, inference_id=inference_id))
    return path


def start_endpoint(settings: Any, uri: str, capture: Path, workers: int | None) -> Any:
    """Create the endpoint ``bench`` with one variant of ``uri``; its state."""
    from mlops.backends.local.gateway.manager import VariantSpec, create_endpoint

    if workers:
        settings.serving.workers = workers
    started = time.perf_counter()
    state = create_endpoint(
        settings,
        "bench",
        [VariantSpec("v1", uri)],
        capture=True,
        capture_destination=str(capture),
        sampling=100,
    )
    print(f"endpoint: ready in {time.perf_counter() - started:.1f}s at {state.url}")
    return state


def count_records(capture: Path, endpoint: str, variant: str, inference_id: str) -> int:
    from mlops.capture import read_capture

    return sum(
        1
        for r in read_capture(str(capture), endpoint, variant)
        if r["eventMetadata"].get("inferenceId") == inference_id
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per server")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--rounds", type=int, default=1, help="interleaved runs per server; the median counts"
    )
    parser.add_argument("--rows", type=int, default=5000, help="taxi rows to train on")
    parser.add_argument("--workers", type=int, default=None, help="ours (default: per core)")
    parser.add_argument("--mlflow-workers", type=int, default=None, help="default: as ours")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-endpoint", action="store_true")
    parser.add_argument(
        "--variant-direct",
        action="store_true",
        help="also drive the endpoint's model server past its gateway",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print(
            "wrk is not installed: apt-get install wrk (or build it from "
            "https://github.com/wg/wrk)",
            file=sys.stderr,
        )
        return 2

    root = Path(tempfile.mkdtemp(prefix="mlops-bench-serving-"))
    os.chdir(root)  # MLflow writes some model artifacts relative to the working directory
    sys.path.insert(0, str(REPO))
    from mlops.backends.local.gateway.manager import delete_endpoint, stop_endpoint
    from mlops.pipelines import run_training_pipeline
    from mlops.settings import Settings

    settings = Settings(work_dir=root / ".mlops")
    started = time.perf_counter()
    result = run_training_pipeline(settings, model_name="taxi", dataset="taxi", rows=args.rows)
    version = result.registered.version
    print(
        f"trained and registered taxi v{version} in {time.perf_counter() - started:.1f}s "
        f"(store {settings.effective_tracking_uri})"
    )
    uri = f"models:/taxi/{version}"
    workers = args.workers or int(
        os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS") or os.cpu_count() or 1
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env.update(
        MLOPS_WORK_DIR=str(settings.work_dir),
        MLOPS_TRACKING_URI=settings.effective_tracking_uri,
        MLFLOW_TRACKING_URI=settings.effective_tracking_uri,
        PYTHONPATH=str(REPO),
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # mlflow execs `uvicorn`
    )
    os.environ["PYTHONPATH"] = str(REPO)  # the endpoint's gateway and model server
    capture = root / "capture"
    endpoint_capture = root / "endpoint-capture"
    procs: list[subprocess.Popen[bytes]] = []
    endpoint: str | None = None
    records: dict[str, int] = {}
    counted: list[tuple[int, int]] = []  # per endpoint run: (admin API's count, wrk's)
    try:
        ours_port, mlflow_port = free_port(), free_port()
        ours_log, mlflow_log = root / "ours.log", root / "mlflow.log"
        ours_cmd = [
            sys.executable,
            "-m",
            "mlops.serving",
            "--model",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(ours_port),
            "--capture",
            str(capture),
            "--sampling",
            "100",
        ]
        if args.workers:
            ours_cmd += ["--workers", str(args.workers)]
        # Each server in a session of its own, as an endpoint's gateway is: on a busy
        # machine Linux shares CPU fairly between sessions (autogroups), not processes.
        ours = subprocess.Popen(
            ours_cmd,
            env=env,
            stdout=ours_log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(ours)
        urls = {"direct": f"http://127.0.0.1:{ours_port}"}
        print(
            f"direct: ready in {wait_ping(urls['direct'], ours, ours_log):.1f}s, "
            f"{workers} workers, capture 100% to {capture}"
        )
        if not args.skip_endpoint:
            state = start_endpoint(settings, uri, endpoint_capture, args.workers)
            endpoint, urls["endpoint"] = state.name, state.url
            if args.variant_direct:  # its model server, past the gateway
                urls["variant"] = f"http://127.0.0.1:{state.variants[0].port}"
        if not args.skip_mlflow:
            mlflow_workers = args.mlflow_workers or workers
            mlflow = subprocess.Popen(
                [
                    str(BIN / "mlflow"),
                    "models",
                    "serve",
                    "-m",
                    uri,
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(mlflow_port),
                    "-w",
                    str(mlflow_workers),
                ],
                env=env,
                stdout=mlflow_log.open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            procs.append(mlflow)
            urls["mlflow"] = f"http://127.0.0.1:{mlflow_port}"
            print(
                f"mlflow: ready in {wait_ping(urls['mlflow'], mlflow, mlflow_log):.1f}s, "
                f"{mlflow_workers} workers"
            )
        answers = {
            name: float(post(url, BODY, "text/csv").decode())
            for name, url in urls.items()
            if name != "mlflow"
        }
        if "mlflow" in urls:
            answers["mlflow"] = float(
                json.loads(post(urls["mlflow"], BODY, "application/json"))["predictions"][0]
            )
        print("same prediction: " + ", ".join(f"{n} {v!r}" for n, v in answers.items()))
        if max(answers.values()) - min(answers.values()) > 1e-5:
            print("ERROR: the servers disagree", file=sys.stderr)
            return 1

        warm = write_script(root, "wrk-warmup")
        for url in urls.values():
            run_wrk(url, warm, args.threads, args.connections, 2)
        runs: dict[str, list[WrkResult]] = {name: [] for name in urls}
        for _ in range(args.rounds):  # interleaved: a busy spell hits every server alike
            for name, url in urls.items():
                script = write_script(root, f"{RUN_ID}-{name}")
                started = time.time()
                run = run_wrk(url, script, args.threads, args.connections, args.duration)
                runs[name].append(run)
                if name == "endpoint":
                    counted.append((endpoint_count(settings, state.name, started), run.requests))
        results = {name: median_run(found) for name, found in runs.items()}
        completed = {name: sum(r.requests for r in found) for name, found in runs.items()}

        ours.send_signal(signal.SIGTERM)
        code = ours.wait(timeout=60)
        records["direct"] = count_records(capture, "taxi", "AllTraffic", f"{RUN_ID}-direct")
        if endpoint is not None:
            stop_endpoint(settings, endpoint)  # flushes the variant's capture
            for name in ("endpoint", "variant"):
                if name in urls:
                    records[name] = count_records(
                        endpoint_capture, endpoint, "v1", f"{RUN_ID}-{name}"
                    )
    finally:
        if endpoint is not None:
            try:
                delete_endpoint(settings, endpoint, force=True)
            except Exception as exc:  # report, and still stop the other servers
                print(f"could not delete endpoint {endpoint}: {exc}", file=sys.stderr)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its workers too
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    return report(args, results, runs, completed, records, counted, code)


def endpoint_count(settings: Any, name: str, since: float) -> int:
    """The requests of v1 since ``since`` in the endpoint's admin API (read after a moment:
    the answers still in flight when wrk stopped count too)."""
    from mlops.backends.local.gateway.client import EndpointClient

    time.sleep(0.5)
    with EndpointClient.for_endpoint(settings, name) as client:
        return int(client.metrics(since)["variants"]["v1"]["requests"])


def median_run(runs: list[WrkResult]) -> WrkResult:
    """The run of median throughput (the lower middle one of an even number)."""
    return sorted(runs, key=lambda r: r.rps)[(len(runs) - 1) // 2]


def report(
    args: argparse.Namespace,
    results: dict[str, WrkResult],
    runs: dict[str, list[WrkResult]],
    completed: dict[str, int],
    records: dict[str, int],
    counted: list[tuple[int, int]],
    code: int,
) -> int:
    """Print the table, the ratios against their targets and the capture checks."""

    def check(label: str, value: float, target: float, above: bool, unit: str = "x") -> bool:
        met = value >= target if above else value <= target
        sign = ">=" if above else "<="
        print(f"  {label} = {value:.2f}{unit} (target {sign} {target:g}: "
              f"{'met' if met else 'MISSED'})")  # fmt: skip
        return met

    print()
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, one CSV row per request")
    if args.rounds > 1:
        print(f"{args.rounds} interleaved rounds; requests/s of each:")
        for name, found in runs.items():
            print(f"  {name:9} " + " ".join(f"{r.rps:7.0f}" for r in found))
        print("the run of median throughput of each:")
    print(
        f"{'server':9} {'requests':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'non-2xx':>8}  socket errors"
    )
    for name, res in results.items():
        print(
            f"{name:9} {res.requests:9d} {res.rps:9.0f} {res.p50_ms:8.2f} {res.p99_ms:8.2f} "
            f"{res.non_2xx:8d}  {res.errors}"
        )
    print()
    direct = results["direct"]
    print("direct:")
    check("requests/s", direct.rps, 1400, True, "")
    check("p99 ms", direct.p99_ms, 26, False, "")
    if "mlflow" in results:
        check("throughput direct/mlflow", direct.rps / results["mlflow"].rps, 5, True)
        check("p99 direct/mlflow", direct.p99_ms / results["mlflow"].p99_ms, 0.2, False)
    if "endpoint" in results:
        endpoint = results["endpoint"]
        print("endpoint (one variant, capture 100%):")
        check("throughput endpoint/direct", endpoint.rps / direct.rps, 0.70, True)
        check("p99 endpoint/direct", endpoint.p99_ms / direct.p99_ms, 2, False)
        if "mlflow" in results:
            check("throughput endpoint/mlflow", endpoint.rps / results["mlflow"].rps, 5, True)
        if "variant" in results:  # no target: what the gateway's hop costs on its own
            variant = results["variant"]
            print(
                f"  throughput endpoint/its model server past the gateway = "
                f"{endpoint.rps / variant.rps:.2f}x, p99 {endpoint.p99_ms / variant.p99_ms:.2f}x"
            )
    ok = True
    # answered after wrk stopped counting: at most one per connection and run
    in_flight = args.connections * args.rounds
    for name, count in records.items():
        done = completed[name]
        capture_ok = done <= count <= done + in_flight
        ok = ok and capture_ok
        print(
            f"capture {name}: {count} records for {done} requests wrk completed "
            f"({'ok' if capture_ok else 'MISMATCH'}; up to {in_flight} answered after wrk "
            f"stopped counting)"
        )
    for number, (seen, done) in enumerate(counted, 1):
        metrics_ok = done <= seen <= done + args.connections
        ok = ok and metrics_ok
        print(
            f"endpoint metrics, run {number}: the admin API counted {seen} requests of v1, "
            f"wrk completed {done} ({'ok' if metrics_ok else 'MISMATCH'})"
        )
    print(f"direct server exit code after SIGTERM: {code}")
    for name, res in results.items():
        if res.non_2xx or res.errors != "none":
            print(f"ERROR: {name} had {res.non_2xx} non-2xx answers, socket errors: {res.errors}")
            ok = False
    ok = ok and code == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
