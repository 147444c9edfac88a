"""Drift decisions: ours (``mlops.monitoring.drift.detect_drift``) against Evidently's
``DataDriftPreset`` on the same full data.

For each size n (reference and current both n rows; 10 numerical and 2 categorical features,
a few of them shifted in current, 1% missing values in two columns):

  ours       ``detect_drift(reference, current, ...)``: wall time, peak memory of the call
             (tracemalloc, in a second run) against the size of the two frames, and the time
             with a ``ReferenceProfile`` prepared beforehand (the monitor's case);
  evidently  ``Report([DataDriftPreset()], include_tests=True).run(...)`` on the full data:
             wall time, per-column decisions (the ``ValueDrift`` tests) and the dataset
             decision (the ``DriftedColumnsCount`` test).

Prints both wall times (and CPU times: on a busy machine wall time moves with the load, CPU
time much less; ours runs columns on up to 4 threads, so its CPU time can exceed its wall
time), the speed-up, the agreement of per-column decisions (%) and of the dataset
decision, the largest relative difference of the scores, and the memory ratio. Targets at 1M
rows: >= 20x faster, 100% agreement, peak memory < 3x the data.

    .venv/bin/python benchmarks/drift.py [--sizes 10000,100000,1000000] [--seed 0]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlops.monitoring.drift import ReferenceProfile, detect_drift  # noqa: E402

NUMERICAL = [f"num_{i}" for i in range(10)]
CATEGORICAL = ["cat_str", "cat_int"]
TARGET_SPEEDUP = 20.0
TARGET_MEMORY = 3.0


def make_frame(rng: np.random.Generator, n: int, *, shifted: bool) -> pd.DataFrame:
    """10 numerical columns of different shapes and 2 categorical ones; in the shifted frame
    num_0..num_2 move (mean, scale, skew), num_3 moves a little, cat_str changes its mix."""
    columns: dict[str, np.ndarray] = {}
    shift = (0.3, 0.0, 0.0, 0.05) if shifted else (0.0, 0.0, 0.0, 0.0)
    columns["num_0"] = rng.normal(shift[0], 1.0, n)
    columns["num_1"] = rng.normal(0.0, 1.5 if shifted else 1.0, n)
    columns["num_2"] = rng.gamma(2.5 if shifted else 2.0, 1.0, n)
    columns["num_3"] = rng.normal(shift[3], 1.0, n)
    columns["num_4"] = rng.uniform(0, 10, n)
    columns["num_5"] = rng.exponential(3.0, n)
    columns["num_6"] = rng.lognormal(0.0, 0.5, n)
    columns["num_7"] = np.round(rng.normal(50, 10, n), 1)  # many ties
    columns["num_8"] = rng.integers(0, 1000, n).astype(np.float64)
    columns["num_9"] = rng.normal(0.0, 1.0, n)
    for name in ("num_5", "num_9"):
        columns[name][rng.random(n) < 0.01] = np.nan
    mix = [0.3, 0.25, 0.2, 0.15, 0.1] if not shifted else [0.15, 0.2, 0.2, 0.2, 0.25]
    frame = pd.DataFrame(columns)
    frame["cat_str"] = pd.Series(rng.choice(["a", "b", "c", "d", "e"], n, p=mix), dtype=object)
    frame["cat_int"] = rng.integers(0, 8, n)
    return frame


def evidently_run(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[float, dict]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMERICAL, categorical_columns=CATEGORICAL)
    start, cpu_start = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
        doc = snapshot.dict()
    elapsed = time.perf_counter() - start
    out: dict = {"scores": {}, "drifted": {}, "cpu_s": time.process_time() - cpu_start}
    for metric in doc["metrics"]:
        if metric["config"]["type"].endswith(":ValueDrift"):
            out["scores"][metric["config"]["column"]] = metric["value"]
    for test in doc["tests"]:
        failed = str(test["status"]).endswith("FAIL")
        if test["id"] == "drift":
            out["drifted"][test["metric_config"]["params"]["column"]] = failed
        elif test["id"] == "lt":
            out["dataset_drifted"] = failed
    return elapsed, out


def run_size(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    reference = make_frame(rng, n, shifted=False)
    current = make_frame(rng, n, shifted=True)
    data_bytes = int(
        reference.memory_usage(deep=True).sum() + current.memory_usage(deep=True).sum()
    )

    def ours():
        return detect_drift(reference, current, numerical=NUMERICAL, categorical=CATEGORICAL)

    gc.collect()
    start, cpu_start = time.perf_counter(), time.process_time()
    result = ours()
    ours_s = time.perf_counter() - start
    ours_cpu_s = time.process_time() - cpu_start

    gc.collect()
    tracemalloc.start()
    ours()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    start = time.perf_counter()
    profile = ReferenceProfile.from_frame(reference, numerical=NUMERICAL, categorical=CATEGORICAL)
    profile_s = time.perf_counter() - start
    start = time.perf_counter()
    with_profile = detect_drift(profile, current)
    with_profile_s = time.perf_counter() - start
    assert with_profile.to_dict() == result.to_dict()

    gc.collect()
    evidently_s, ev = evidently_run(reference, current)

    same = [result.columns[c].drifted == ev["drifted"][c] for c in NUMERICAL + CATEGORICAL]
    max_rel = max(
        abs(result.columns[c].score - ev["scores"][c]) / max(abs(ev["scores"][c]), 1e-300)
        for c in NUMERICAL + CATEGORICAL
    )
    return {
        "n": n,
        "ours_s": ours_s,
        "profile_s": profile_s,
        "with_profile_s": with_profile_s,
        "evidently_s": evidently_s,
        "speedup": evidently_s / ours_s,
        "ours_cpu_s": ours_cpu_s,
        "evidently_cpu_s": ev["cpu_s"],
        "agreement": 100.0 * sum(same) / len(same),
        "dataset_same": result.drifted == ev["dataset_drifted"],
        "drifted": f"{result.count}/{result.n_columns}",
        "max_rel_score_diff": max_rel,
        "peak_mb": peak / 1e6,
        "data_mb": data_bytes / 1e6,
        "memory_ratio": peak / data_bytes,
    }


def warm_up() -> None:
    """Import and first-call costs (lazy imports inside Evidently and scipy) out of the
    timings."""
    rng = np.random.default_rng(1)
    reference = make_frame(rng, 300, shifted=False)
    current = make_frame(rng, 300, shifted=True)
    detect_drift(reference, current, numerical=NUMERICAL, categorical=CATEGORICAL)
    evidently_run(reference, current)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="10000,100000,1000000",
        help="comma-separated row counts (each of reference and current)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]

    header = (
        f"{'rows':>9} {'ours s':>8} {'evidently s':>12} {'speed-up':>9} {'agree %':>8} "
        f"{'dataset':>8} {'drifted':>8} {'max rel':>8} {'peak MB':>8} {'data MB':>8} "
        f"{'mem x':>6} {'prof s':>7} {'w/prof s':>8} {'cpu ours':>9} {'cpu evid':>9}"
    )
    warm_up()
    print(header)
    failures = []
    for n in sizes:
        r = run_size(n, args.seed)
        print(
            f"{r['n']:>9,} {r['ours_s']:>8.3f} {r['evidently_s']:>12.2f} {r['speedup']:>8.1f}x "
            f"{r['agreement']:>8.1f} {'same' if r['dataset_same'] else 'DIFF':>8} "
            f"{r['drifted']:>8} {r['max_rel_score_diff']:>8.1e} {r['peak_mb']:>8.1f} "
            f"{r['data_mb']:>8.1f} {r['memory_ratio']:>6.2f} {r['profile_s']:>7.3f} "
            f"{r['with_profile_s']:>8.3f} {r['ours_cpu_s']:>9.3f} {r['evidently_cpu_s']:>9.2f}",
            flush=True,
        )
        if r["agreement"] < 100 or not r["dataset_same"]:
            failures.append(f"{n:,} rows: decisions differ from Evidently")
        if n >= 1_000_000 and r["speedup"] < TARGET_SPEEDUP:
            failures.append(f"{n:,} rows: speed-up {r['speedup']:.1f}x < {TARGET_SPEEDUP:.0f}x")
        if n >= 1_000_000 and r["memory_ratio"] >= TARGET_MEMORY:
            failures.append(f"{n:,} rows: peak memory {r['memory_ratio']:.2f}x the data")
    for failure in failures:
        print("MISSED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
