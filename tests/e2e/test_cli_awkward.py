"""Awkward input through the real ``mlops`` console script: one clear, escaped line each.

Every case fails before training (most before the flow starts), so the module is quick;
only the table with missing targets trains, as going on is right there (with a warning).
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.e2e.test_cli import PROJECT_FILE, run_cli

pytestmark = pytest.mark.slow


def _error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("awkward")
    (folder / "mlops.toml").write_text(PROJECT_FILE)
    rng = np.random.default_rng(0)
    n = 60
    base = pd.DataFrame(
        {"distance": rng.uniform(1, 9, n).round(2), "fare": rng.uniform(5, 40, n).round(2)}
    )
    base.assign(fare=base["distance"] * 3 + 2.5).to_csv(folder / "fares.csv", index=False)
    base.assign(tags=[[1, 2]] * n).to_parquet(folder / "listcol.parquet")
    rows = "\n".join(
        f"{d},{d * 2},{f}" for d, f in zip(base["distance"], base["fare"], strict=True)
    )
    (folder / "dup.csv").write_text(f"distance,distance,fare\n{rows}\n")
    inf = base.copy()
    inf.loc[4, "distance"] = np.inf
    inf.to_csv(folder / "inf.csv", index=False)
    nan = base.assign(fare=base["distance"] * 3 + 2.5)
    nan.loc[[1, 5, 7], "fare"] = np.nan
    nan.to_csv(folder / "nan_target.csv", index=False)
    # a task table naming another task's metric: the error shows the [table] it belongs in
    gate = folder / "gate"
    gate.mkdir()
    (gate / "mlops.toml").write_text(
        PROJECT_FILE + "\n[gate.multiclass.thresholds.r2]\nmin = 0.3\n"
    )
    return folder


CASES: dict[str, tuple[list[str], list[str]]] = {
    # model name: (train arguments, words the one error line must hold)
    "listcol": (
        ["--data", "listcol.parquet", "--target", "fare"],
        ["column 'tags'", "listcol.parquet", "nested values", "[1, 2] at row 1"],
    ),
    "dup": (
        ["--data", "dup.csv", "--target", "fare"],
        ["dup.csv", "duplicate column names ('distance')"],
    ),
    "inf": (
        ["--data", "inf.csv", "--target", "fare"],
        ["column 'distance'", "infinite values (inf at row 5)"],
    ),
    "nonsense": (
        ["--dataset", "iris", "-p", "nonsense=1"],
        ["-p nonsense", "not an XGBoost parameter", "max_depth"],
    ),
    "banana": (
        ["--dataset", "iris", "-p", "max_depth=banana"],
        ["-p max_depth: 'banana' is not valid", "integer"],
    ),
    "gate-task": (
        ["--dataset", "iris", "--gate", "r2>=0.3"],
        ["--gate r2", "multiclass", "accuracy, macro_f1, logloss"],
    ),
    "gate-malformed": (
        ["--dataset", "taxi", "--gate", "r2=>0.3"],
        ["--gate 'r2=>0.3' is not METRIC>=NUMBER"],
    ),
}


@pytest.fixture(scope="module")
def runs(
    tables: Path, prefect_server: str
) -> tuple[dict[str, subprocess.CompletedProcess[str]], list[dict[str, object]]]:
    """Every case through `mlops train`, then `mlops models list --json` once."""
    # The project's MLflow store is created first: two processes creating it at once race.
    first = run_cli(tables, prefect_server, "models", "list", "--json")
    assert first.returncode == 0, first.stderr
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(
                run_cli, tables, prefect_server, "train", "--model-name", name, *args, timeout=180
            )
            for name, (args, _) in CASES.items()
        }
        done = {name: future.result() for name, future in futures.items()}
    listed = run_cli(tables, prefect_server, "models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return done, json.loads(listed.stdout or "[]")


@pytest.mark.parametrize("name", list(CASES))
def test_awkward_input_is_one_error_line_and_registers_nothing(
    runs: tuple[dict[str, subprocess.CompletedProcess[str]], list[dict[str, object]]],
    name: str,
) -> None:
    done, registered = runs
    proc = done[name]
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    (line,) = _error_lines(proc)
    for word in CASES[name][1]:
        assert word in line, line
    # said once: no Prefect task/flow ERROR lines, no notification copy, no traceback
    assert "ERROR" not in output, output
    assert "Traceback" not in output, output
    assert "train finished" not in output  # nothing was trained
    assert name not in {r["name"] for r in registered}


def test_failure_details_are_behind_verbose(tables: Path, prefect_server: str) -> None:
    proc = run_cli(
        tables,
        prefect_server,
        "train",
        "--model-name",
        "listcol-v",
        "-v",
        *CASES["listcol"][0],
        timeout=180,
    )
    assert proc.returncode == 1
    assert len(_error_lines(proc)) == 1
    assert "ERROR" in proc.stderr  # Prefect's task and flow lines, with their tracebacks
    assert "Traceback" in proc.stderr


def test_error_line_is_escaped_and_comes_before_any_work(tables: Path, prefect_server: str) -> None:
    proc = run_cli(tables / "gate", prefect_server, "train", "-m", "iris", "--dataset", "iris")
    assert proc.returncode == 1
    (line,) = _error_lines(proc)
    assert "gate.multiclass.thresholds.r2" in line
    assert "[gate.regression.thresholds.r2]" in line  # rich did not eat the brackets
    assert "prepare" not in proc.stderr  # no flow run started


def test_missing_targets_train_with_one_warning(tables: Path, prefect_server: str) -> None:
    proc = run_cli(
        tables,
        prefect_server,
        "train",
        "-m",
        "nan-target",
        "--data",
        "nan_target.csv",
        "--target",
        "fare",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, proc.stderr
    assert "dropped 3 rows of 60" in warnings[0] and "'fare' is missing" in warnings[0]
    assert "Registered model 'nan-target'" in proc.stdout


def test_sql_store_without_driver_is_one_line(tables: Path, prefect_server: str) -> None:
    uri = "postgresql://u:pa/ss123@127.0.0.1:1/mlflow"
    proc = run_cli(
        tables, prefect_server, "train", "-m", "pg", "--dataset", "iris", MLFLOW_TRACKING_URI=uri
    )
    assert proc.returncode == 1
    (line,) = _error_lines(proc)
    assert "needs the database driver" in line and "pip install" in line
    assert "pa/ss123" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_config_show_masks_every_credential_form(tables: Path, prefect_server: str) -> None:
    proc = run_cli(
        tables,
        prefect_server,
        "config",
        "show",
        MLFLOW_TRACKING_URI="postgresql://u:p@ss123@db.internal/mlflow?sslmode=require&password=hunter2",
        MLFLOW_REGISTRY_URI="postgresql://u:pa/ss123@db.internal/registry",
        MLOPS_AWS__ENDPOINT_URL="https://tok3n@minio.internal:9000/?token=t0k&secret=s3c&key=k3y",
    )
    assert proc.returncode == 0, proc.stderr
    for secret in ("ss123", "hunter2", "tok3n", "t0k", "s3c", "k3y"):
        assert secret not in proc.stdout, secret
    assert "postgresql://u:****@db.internal/mlflow?sslmode=require&password=****" in proc.stdout
    assert "https://****@minio.internal:9000/" in proc.stdout
