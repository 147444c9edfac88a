"""The whole ``mlops monitor`` on a window of captured single-row requests, beside Evidently.

In a temp dir: train and register ``taxi`` (small), write ``--rows`` captured requests in
SageMaker's capture format and layout (one CSV row per request, the model's own
predictions, the second half shifted), then in one run:

  ours       ``mlops.stages.monitor.monitor``: list and read the capture files, decode every
             record, check constraints, decide drift on every row, build the Evidently report
             on a sample, log the MLflow run and the workspace snapshot;
  evidently  Evidently's ``Report([DataDriftPreset(), DataSummaryPreset()])`` alone on the
             already-decoded frame (the same reference, every row): no reading, no decoding.

Prints both times and the ratio (target: ours < 0.5 × Evidently's), and whether both reach
the same dataset decision.

    .venv/bin/python benchmarks/monitor.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
ENDPOINT = "taxi-bench"


def write_capture(dest: Path, variant: str, rows: int, model, features: list[str]) -> None:
    """``rows`` capture records, ~1,000 a file (a second of a busy endpoint each)."""
    import numpy as np
    import pandas as pd

    from mlops.data.builtin import engineer_features, make_batch

    half = rows // 2
    parts = []
    for shift, n, seed in ((0.0, half, 1), (1.5, rows - half, 2)):
        frame, _ = engineer_features(
            make_batch("taxi", rows=n, shift=shift, seed=seed), "total_amount"
        )
        parts.append(frame[features])
    table = pd.concat(parts, ignore_index=True)
    preds = np.asarray(model.predict(table), dtype=float)
    cols = [table[c].to_numpy() for c in features]
    per_file = 1000
    prefix = (
        '{"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", '
        '"data": "'
    )
    for start in range(0, rows, per_file):
        when = T0 + timedelta(seconds=start // per_file)
        folder = dest / ENDPOINT / variant / when.strftime("%Y/%m/%d/%H")
        folder.mkdir(parents=True, exist_ok=True)
        stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        lines = []
        for i in range(start, min(rows, start + per_file)):
            data = ",".join(repr(float(c[i])) if c.dtype.kind == "f" else str(c[i]) for c in cols)
            lines.append(
                f'{prefix}{data}\\n", "encoding": "CSV"}}, "endpointOutput": '
                f'{{"observedContentType": "text/csv; charset=utf-8", "mode": "OUTPUT", '
                f'"data": "{float(preds[i])!r}", "encoding": "CSV"}}}}, "eventMetadata": '
                f'{{"eventId": "{uuid.uuid4()}", "inferenceId": "r{i}", '
                f'"inferenceTime": "{stamp}"}}, "eventVersion": "0"}}\n'
            )
        name = f"{when.strftime('%M-%S')}-000-{uuid.uuid4()}.jsonl"
        (folder / name).write_text("".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    import warnings

    import mlflow.xgboost

    from mlops.pipelines import run_training_pipeline
    from mlops.settings import Settings
    from mlops.stages.monitor import monitor

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / ".mlops"
        settings = Settings(
            work_dir=work,
            tracking_uri=f"sqlite:///{work.resolve()}/mlflow.db",
            training={"n_estimators": 60, "n_jobs": 2},
        )
        print(f"training taxi and writing {args.rows:,} captured requests ...", flush=True)
        version = run_training_pipeline(
            settings, model_name="taxi", dataset="taxi", rows=5000
        ).registered.version
        model = mlflow.xgboost.load_model(f"models:/taxi/{version}")
        features = list(model.get_booster().feature_names)
        write_capture(Path(settings.capture_destination), f"v{version}", args.rows, model, features)
        size = sum(p.stat().st_size for p in Path(settings.capture_destination).rglob("*.jsonl"))
        print(f"capture: {size / 1e6:.0f} MB", flush=True)

        # Both sides run warm: Evidently's import (seconds) is paid once per process by a
        # scheduled flow as by a notebook, so it is timed apart.
        started = time.perf_counter()
        import evidently.presets  # noqa: F401

        print(f"import evidently: {time.perf_counter() - started:.2f} s (once per process)")
        started = time.perf_counter()
        result = monitor(settings, "taxi", endpoint=ENDPOINT, start=T0, end=T0 + timedelta(days=1))
        ours = time.perf_counter() - started
        report = result.versions[0]
        print(
            f"ours      {ours:8.2f} s  ({report.rows:,} rows, drift share "
            f"{report.drift_share:.2f}, dataset drift {report.drift_detected})",
            flush=True,
        )

        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset, DataSummaryPreset

        from mlops.capture import read_capture_frame
        from mlops.monitoring.reference import load_baseline
        from mlops.stages.monitor import _drift_frames
        from mlops.tracking import Tags, connect

        baseline = load_baseline(
            connect(settings).get_model_version("taxi", version).tags[Tags.BASELINE_URI]
        )
        frame, _ = read_capture_frame(
            settings.capture_destination, ENDPOINT, f"v{version}", baseline.features
        )
        reference, live, numerical, categorical = _drift_frames(baseline, frame)
        definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            started = time.perf_counter()
            snapshot = Report([DataDriftPreset(), DataSummaryPreset()], include_tests=True).run(
                Dataset.from_pandas(live, data_definition=definition),
                Dataset.from_pandas(reference, data_definition=definition),
            )
            theirs = time.perf_counter() - started
        share = next(
            m["value"]["share"]
            for m in snapshot.dict()["metrics"]
            if "DriftedColumnsCount" in m["metric_name"]
        )
        print(f"evidently {theirs:8.2f} s  (already-decoded frame; drift share {share:.2f})")
        print(
            f"ratio ours/evidently: {ours / theirs:.2f} (target < 0.5); same dataset decision: "
            f"{(share >= settings.monitoring.drift_share) == report.drift_detected}"
        )


if __name__ == "__main__":
    main()
