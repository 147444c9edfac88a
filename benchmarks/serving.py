"""Model-server throughput and latency: ours against ``mlflow models serve``.

In a temp dir: train and register ``taxi`` (``run_training_pipeline``), start

  ours    ``python -m mlops.serving --model models:/taxi/1`` (default workers: one per core),
          data capture on at 100% to a temp folder;
  mlflow  ``mlflow models serve -m models:/taxi/1 --env-manager local`` with as many
          workers (``--mlflow-workers`` to change), the same tracking store;

check that both answer the same prediction, then drive each in turn with
``wrk -t2 -c16 -d10s --latency`` POSTing one CSV row (``text/csv``, with the header line
that MLflow's CSV parser needs; ours gets the same body). Reports requests/s, p50 and p99,
the ratios (targets: throughput ours/mlflow >= 5, p99 ours/mlflow <= 0.2; absolute: >= 1400
requests/s with p99 <= 26 ms for ours), non-2xx answers, and whether the capture holds one
record per request wrk completed (after a SIGTERM that flushes it).

    .venv/bin/python benchmarks/serving.py [--duration 10] [--connections 16] [--rows 5000]
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per server")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rows", type=int, default=5000, help="taxi rows to train on")
    parser.add_argument("--workers", type=int, default=None, help="ours (default: per core)")
    parser.add_argument("--mlflow-workers", type=int, default=None, help="default: as ours")
    parser.add_argument("--skip-mlflow", action="store_true")
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
    from mlops.capture import read_capture
    from mlops.settings import Settings
    from mlops.stages.pipeline import run_training_pipeline

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
    capture = root / "capture"
    procs: list[subprocess.Popen[bytes]] = []
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
        ours = subprocess.Popen(
            ours_cmd, env=env, stdout=ours_log.open("wb"), stderr=subprocess.STDOUT
        )
        procs.append(ours)
        ours_url = f"http://127.0.0.1:{ours_port}"
        print(
            f"ours:   ready in {wait_ping(ours_url, ours, ours_log):.1f}s, {workers} workers, "
            f"capture 100% to {capture}"
        )
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        mlflow = None
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
            )
            procs.append(mlflow)
            print(
                f"mlflow: ready in {wait_ping(mlflow_url, mlflow, mlflow_log):.1f}s, "
                f"{mlflow_workers} workers"
            )
            mine = float(post(ours_url, BODY, "text/csv").decode())
            import json

            theirs = json.loads(post(mlflow_url, BODY, "application/json"))["predictions"][0]
            print(f"same prediction: ours {mine!r}, mlflow {theirs!r}")
            if abs(mine - float(theirs)) > 1e-5:
                print("ERROR: the servers disagree", file=sys.stderr)
                return 1

        warm = write_script(root, "wrk-warmup")
        main_script = write_script(root, RUN_ID)
        results: dict[str, WrkResult] = {}
        for name, url in (("ours", ours_url), ("mlflow", mlflow_url)):
            if name == "mlflow" and mlflow is None:
                continue
            run_wrk(url, warm, args.threads, args.connections, 2)
            results[name] = run_wrk(url, main_script, args.threads, args.connections, args.duration)

        ours.send_signal(signal.SIGTERM)
        code = ours.wait(timeout=60)
        records = sum(
            1
            for r in read_capture(str(capture), "taxi", "AllTraffic")
            if r["eventMetadata"].get("inferenceId") == RUN_ID
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    print()
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, one CSV row per request")
    print(
        f"{'server':8} {'requests':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'non-2xx':>8}  socket errors"
    )
    for name, res in results.items():
        print(
            f"{name:8} {res.requests:9d} {res.rps:9.0f} {res.p50_ms:8.2f} {res.p99_ms:8.2f} "
            f"{res.non_2xx:8d}  {res.errors}"
        )
    ok = True
    mine_res = results["ours"]
    print()
    print(
        f"ours: {mine_res.rps:.0f} req/s (target >= 1400: "
        f"{'met' if mine_res.rps >= 1400 else 'MISSED'}), p99 {mine_res.p99_ms:.2f} ms "
        f"(target <= 26: {'met' if mine_res.p99_ms <= 26 else 'MISSED'})"
    )
    if "mlflow" in results:
        theirs_res = results["mlflow"]
        throughput = mine_res.rps / theirs_res.rps
        latency = mine_res.p99_ms / theirs_res.p99_ms
        print(
            f"throughput ours/mlflow = {throughput:.1f}x (target >= 5: "
            f"{'met' if throughput >= 5 else 'MISSED'})"
        )
        print(
            f"p99 ours/mlflow = {latency:.3f} (target <= 0.2: "
            f"{'met' if latency <= 0.2 else 'MISSED'})"
        )
    in_flight = args.connections  # answered after wrk stopped counting: at most one each
    capture_ok = mine_res.requests <= records <= mine_res.requests + in_flight
    print(
        f"capture: {records} records for {mine_res.requests} requests wrk completed "
        f"({'ok' if capture_ok else 'MISMATCH'}; up to {in_flight} answered after wrk "
        f"stopped counting); server exit code after SIGTERM: {code}"
    )
    for name, res in results.items():
        if res.non_2xx or res.errors != "none":
            print(f"ERROR: {name} had {res.non_2xx} non-2xx answers, socket errors: {res.errors}")
            ok = False
    ok = ok and capture_ok and code == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
