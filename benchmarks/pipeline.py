"""Orchestration + tracking overhead of the training pipeline.

Runs, on the taxi problem at 100k rows, in one process and interleaved:

  anchor  the same stage computations called directly: prepare, the training job on the local
          backend, test metrics and gate, baseline statistics — no Prefect, no MLflow;
  mlflow  ``mlops.pipelines.run_training_pipeline`` (MLflow tracking, no Prefect);
  flow    the ``training-pipeline`` Prefect flow against a real Prefect server (MLflow too).

Every repetition uses a fresh seed (fresh data, so nothing is reused from a cache), the same
seeds on every side. The one-time costs (Prefect server start, MLflow store creation, imports)
are paid in a warm-up round and reported apart. Target: flow - anchor <= 3 s per run.

    .venv/bin/python benchmarks/pipeline.py [--rows 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


def start_prefect_server(home: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api"
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("prefect server exited") from None
            time.sleep(0.2)
    return proc, url, time.perf_counter() - started


def anchor(settings, rows: int, seed: int) -> float:  # noqa: ANN001
    """The stages' computations without an orchestrator or a tracking store."""
    from mlops.backends import TrainingJobSpec, get_backend
    from mlops.evaluation.gate import check_gate
    from mlops.evaluation.metrics import compute_metrics
    from mlops.monitoring.baseline import build_constraints, build_statistics, reference_sample
    from mlops.stages import prepare
    from mlops.stages.evaluate import predict_scores
    from mlops.stages.prepare import load_split
    from mlops.stages.train import load_xgboost_model, resolve_hyperparameters

    started = time.perf_counter()
    s = settings.model_copy(update={"seed": seed})
    prepared = prepare(s, dataset="taxi", rows=rows)
    result = get_backend(s).run_training_job(TrainingJobSpec(
        job_name=f"anchor-{seed}",
        channels={"train": str(prepared.split_path("train")),
                  "validation": str(prepared.split_path("validation"))},
        hyperparameters={**resolve_hyperparameters(s), "target": prepared.target,
                         "task": str(prepared.task), "seed": seed},
    ))
    assert result.status == "Completed", result.failure_reason
    model = load_xgboost_model(result.model_dir, prepared.task)
    test = load_split(prepared, "test")
    metrics = compute_metrics(prepared.task, test[prepared.target].to_numpy(),
                              predict_scores(model, test[prepared.features], prepared.task))
    assert check_gate(prepared.task, metrics, thresholds=None, champion_metrics=None,
                      champion_version=None, margin=0.05).passed
    train = load_split(prepared, "train")
    stats = build_statistics(train[prepared.features])
    build_constraints(train[prepared.features], stats)
    sample = reference_sample(train, s.baseline.sample_rows, seed)
    predict_scores(model, sample[prepared.features], prepared.task)
    return time.perf_counter() - started


def tracked(settings, rows: int, seed: int) -> float:  # noqa: ANN001
    from mlops.pipelines import run_training_pipeline

    started = time.perf_counter()
    run_training_pipeline(settings.model_copy(update={"seed": seed}), model_name="bench-mlflow",
                          dataset="taxi", rows=rows)
    return time.perf_counter() - started


def flow(settings, rows: int, seed: int) -> float:  # noqa: ANN001
    from flows.training import training_pipeline

    started = time.perf_counter()
    training_pipeline(model_name="bench-flow", dataset="taxi", rows=rows,
                      settings=settings.model_copy(update={"seed": seed}))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as tmp:
        root = Path(tmp)
        os.environ["PREFECT_HOME"] = str(root / "prefect")
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
        server, url, server_s = start_prefect_server(root / "prefect")
        os.environ["PREFECT_API_URL"] = url
        try:
            from mlops.settings import Settings

            settings = Settings(work_dir=root / ".mlops")
            one_time = time.perf_counter()
            sides = {"anchor": anchor, "mlflow": tracked, "flow": flow}
            warm = {name: fn(settings, args.rows, 1000) for name, fn in sides.items()}
            one_time = time.perf_counter() - one_time
            times: dict[str, list[float]] = {name: [] for name in sides}
            for i in range(args.repeat):
                for name, fn in sides.items():
                    times[name].append(fn(settings, args.rows, 2000 + i))
                print(f"round {i + 1}: " + "  ".join(f"{n}={t[-1]:.2f}s"
                                                     for n, t in times.items()), flush=True)
        finally:
            from prefect.logging.handlers import APILogHandler

            APILogHandler().flush()  # ship queued run logs before the server goes away
            server.terminate()
            server.wait(timeout=30)

    med = {name: statistics.median(t) for name, t in times.items()}
    print()
    print(f"taxi, {args.rows} rows, {args.repeat} runs per side (median), 2 cores")
    print(f"one-time: prefect server start {server_s:.1f}s; warm-up round "
          f"{one_time:.1f}s (anchor {warm['anchor']:.1f}s, mlflow {warm['mlflow']:.1f}s, "
          f"flow {warm['flow']:.1f}s)")
    print(f"anchor (stage computations, no Prefect, no MLflow): {med['anchor']:.2f}s")
    print(f"stages + MLflow tracking:                          {med['mlflow']:.2f}s "
          f"(+{med['mlflow'] - med['anchor']:.2f}s)")
    print(f"Prefect flow + MLflow tracking:                    {med['flow']:.2f}s "
          f"(+{med['flow'] - med['anchor']:.2f}s)")
    overhead = med["flow"] - med["anchor"]
    print(f"ratio flow/anchor: {med['flow'] / med['anchor']:.2f}x; overhead per run "
          f"{overhead:.2f}s (target <= 3.00s): {'MET' if overhead <= 3.0 else 'NOT MET'}")


if __name__ == "__main__":
    main()
