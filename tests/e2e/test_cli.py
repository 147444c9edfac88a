"""The ``mlops`` console script as a user runs it: a subprocess in a project folder.

The commands talk to the session's real Prefect server and keep their MLflow store in the
folder's ``.mlops/``, as a user's would. A small ``mlops.toml`` keeps training fast.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.data import make_batch
from mlops.tracking import connect
from tests.conftest import make_settings

pytestmark = pytest.mark.slow

MLOPS = Path(sys.executable).parent / "mlops"
PROJECT_FILE = """\
[training]
n_estimators = 60
early_stopping_rounds = 10
n_jobs = 2
"""


def _env(api_url: str, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLOPS_", "MLFLOW_", "_MLOPS_")) and k != "PREFECT_PROFILE"
    }
    env.update(PREFECT_API_URL=api_url, COLUMNS="200", NO_COLOR="1", **extra)
    return env


def run_cli(
    cwd: Path, api_url: str, *args: str, timeout: int = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MLOPS), *args],
        cwd=cwd,
        env=_env(api_url, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _registered(cwd: Path, api_url: str) -> list[dict[str, object]]:
    listed = run_cli(cwd, api_url, "models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def _client(project: Path) -> Any:
    """An MLflow client on the project's store, to check what the CLI did."""
    return connect(make_settings(project))


def _error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("project")
    (folder / "mlops.toml").write_text(PROJECT_FILE)
    return folder


@pytest.fixture(scope="module")
def iris_run(project: Path, prefect_server: str) -> subprocess.CompletedProcess[str]:
    """`mlops train --dataset iris --model-name iris`, once for the module."""
    return run_cli(project, prefect_server, "train", "--dataset", "iris", "--model-name", "iris")


def test_train_builtin_prints_version_and_where_to_look(
    iris_run: subprocess.CompletedProcess[str], project: Path, prefect_server: str
) -> None:
    assert iris_run.returncode == 0, iris_run.stderr[-3000:]
    out = iris_run.stdout
    assert "Registered model 'iris' version 1" in out
    assert "aliases: challenger" in out and "approval: pending" in out
    assert "task: multiclass (inferred" in out
    assert "test metrics: accuracy=" in out
    db = (project / ".mlops" / "mlflow.db").resolve()
    assert db.is_file()
    assert f"ui --backend-store-uri sqlite:///{db}" in out
    assert f"Prefect UI: open {prefect_server.removesuffix('/api')}" in out
    assert "mlflow.pyfunc.load_model('models:/iris@challenger')" in out
    assert "Traceback" not in iris_run.stderr


def test_models_list_approve_and_reject(
    iris_run: subprocess.CompletedProcess[str], project: Path, prefect_server: str
) -> None:
    assert iris_run.returncode == 0, iris_run.stderr[-3000:]

    table = run_cli(project, prefect_server, "models", "list")
    assert table.returncode == 0, table.stderr
    (row,) = [line for line in table.stdout.splitlines() if " iris " in f" {line} "]
    assert "challenger" in row and "pending" in row and "accuracy=" in row

    approved = run_cli(project, prefect_server, "approve", "iris", "1", "--comment", "ok")
    assert approved.returncode == 0, approved.stderr
    me = getpass.getuser()  # the approver by default; the CLI runs with this environment too
    assert f"iris v1: approved by {me}" in approved.stdout
    assert "(ok)" in approved.stdout
    (entry,) = [r for r in _registered(project, prefect_server) if r["name"] == "iris"]
    assert entry["version"] == "1"
    assert entry["approval"] == "approved"
    assert entry["approved_by"] == me
    assert entry["approved_at"].endswith("Z")
    assert entry["approval_comment"] == "ok"
    assert entry["aliases"] == ["challenger"]
    assert "test_accuracy" in entry["metrics"]

    rejected = run_cli(
        project, prefect_server, "reject", "iris", "1", "-c", "drifts", "--approver", "ana"
    )
    assert rejected.returncode == 0, rejected.stderr
    assert "iris v1: rejected by ana" in rejected.stdout
    assert "(drifts)" in rejected.stdout
    client = _client(project)
    version = client.get_model_version("iris", "1")
    assert version.tags["mlops.approval"] == "rejected"
    assert version.tags["mlops.approved_by"] == "ana"
    assert version.tags["mlops.approval_comment"] == "drifts"
    assert "challenger" not in client.get_registered_model("iris").aliases  # not a candidate now


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("approve", "nosuch", "1"), ["'nosuch'", "does not exist", "iris"]),
        (("reject", "iris", "99"), ["'iris'", "no version 99", "versions: 1"]),
    ],
)
def test_unknown_model_or_version(
    iris_run: subprocess.CompletedProcess[str],
    project: Path,
    prefect_server: str,
    args: tuple[str, ...],
    words: list[str],
) -> None:
    assert iris_run.returncode == 0, iris_run.stderr[-3000:]
    proc = run_cli(project, prefect_server, *args)
    assert proc.returncode == 1
    (line,) = _error_lines(proc)
    for word in words:
        assert word in line
    assert "Traceback" not in proc.stderr


def test_train_own_csv_infers_regression(
    iris_run: subprocess.CompletedProcess[str], project: Path, prefect_server: str
) -> None:
    make_batch("taxi", rows=1500, seed=5).to_csv(project / "trips.csv", index=False)
    proc = run_cli(
        project,
        prefect_server,
        "train",
        "--data",
        "trips.csv",
        "--target",
        "total_amount",
        "--model-name",
        "byo",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Registered model 'byo' version 1" in proc.stdout
    assert "task: regression (inferred" in proc.stdout
    assert "test metrics: rmse=" in proc.stdout
    client = _client(project)
    version = client.get_model_version("byo", "1")
    assert version.tags["mlops.approval"] == "pending"
    assert version.tags["mlops.data_source"] == "trips.csv"
    assert version.tags["mlops.task"] == "regression"
    assert str(client.get_registered_model("byo").aliases["challenger"]) == "1"
    assert client.get_run(version.run_id).data.tags["mlops.task_inferred"] == "true"


@pytest.mark.parametrize("as_json", [False, True])
def test_config_show_never_prints_secrets(
    tmp_path: Path, prefect_server: str, as_json: bool
) -> None:
    args = ("config", "show", "--json") if as_json else ("config", "show")
    proc = run_cli(
        tmp_path,
        prefect_server,
        *args,
        MLOPS_TRACKING_URI="postgresql://u:s3cret@h/db",
        MLOPS_TRAINING__MAX_DEPTH="8",
        AWS_SECRET_ACCESS_KEY="aws-s3cret",
    )
    assert proc.returncode == 0, proc.stderr
    assert "s3cret" not in proc.stdout + proc.stderr
    if as_json:
        data = json.loads(proc.stdout)
        assert data["tracking_uri"] == "postgresql://u:****@h/db"
        assert data["training"]["max_depth"] == 8
        assert data["aws"]["secret_access_key"] == "****"
        assert data["backend"] == "local"
    else:
        assert 'tracking_uri = "postgresql://u:****@h/db"' in proc.stdout
        assert "[training]" in proc.stdout and "max_depth = 8" in proc.stdout


def test_config_error_is_one_line(tmp_path: Path, prefect_server: str) -> None:
    proc = run_cli(tmp_path, prefect_server, "config", "show", MLOPS_TRAINING__MAX_DEPTH="0")
    assert proc.returncode == 1
    (line,) = _error_lines(proc)
    assert "training.max_depth" in line
    assert "Traceback" not in proc.stderr


def test_usage_errors_print_usage_and_exit_2(tmp_path: Path, prefect_server: str) -> None:
    proc = run_cli(tmp_path, prefect_server, "train", "--dataset", "iris")  # no --model-name
    assert proc.returncode == 2
    assert "Missing option '--model-name'" in proc.stderr
    assert "unexpected" not in proc.stderr and "Traceback" not in proc.stderr

    helped = run_cli(tmp_path, prefect_server, "train", "--help")
    assert helped.returncode == 0
    assert "[gate] in mlops.toml" in " ".join(helped.stdout.split())  # not eaten as markup


def test_data_make_writes_a_drifted_batch(tmp_path: Path, prefect_server: str) -> None:
    proc = run_cli(
        tmp_path,
        prefect_server,
        "data",
        "make",
        "taxi",
        "--rows",
        "500",
        "--shift",
        "1.5",
        "--seed",
        "3",
        "-o",
        "b.csv",
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote 500 rows of taxi" in proc.stdout
    batch = pd.read_csv(tmp_path / "b.csv")
    assert len(batch) == 500
    expected = make_batch("taxi", rows=500, shift=1.5, seed=3)
    assert list(batch.columns) == list(expected.columns)
    np.testing.assert_allclose(batch["trip_distance"], expected["trip_distance"])
    calm = make_batch("taxi", rows=500, shift=0.0, seed=3)
    assert batch["trip_distance"].median() > 2 * calm["trip_distance"].median()


@pytest.fixture(scope="module")
def bad_tables(project: Path) -> Path:
    """Broken tables in the project folder, one per problem."""
    folder = project
    rng = np.random.default_rng(0)
    base = pd.DataFrame(
        {"distance": rng.uniform(1, 9, 60).round(2), "fare": rng.uniform(5, 40, 60)}
    )
    base.to_csv(folder / "fares.csv", index=False)
    (folder / "empty.csv").write_text("distance,fare\n")
    base.assign(label="yes").drop(columns="fare").to_csv(folder / "oneclass.csv", index=False)
    dirty = base.astype({"distance": object})
    dirty.loc[[3, 30], "distance"] = ["n/a km", "??"]
    dirty.to_csv(folder / "dirty.csv", index=False)
    return folder


BAD_INPUTS: dict[str, tuple[list[str], list[str]]] = {
    # model name: (train arguments, words the error line must hold)
    "bad-dataset": (["--dataset", "titanic"], ["'titanic'", "not a built-in dataset"]),
    "bad-target": (
        ["--data", "fares.csv", "--target", "far"],
        ["target column 'far'", "fares.csv", "did you mean 'fare'"],
    ),
    "bad-empty": (["--data", "empty.csv", "--target", "fare"], ["empty.csv", "no rows"]),
    "bad-oneclass": (
        ["--data", "oneclass.csv", "--target", "label"],
        ["'label'", "oneclass.csv", "single class"],
    ),
    "bad-garbage": (
        ["--data", "dirty.csv", "--target", "fare"],
        ["'distance'", "dirty.csv", "non-numeric", "n/a km"],
    ),
    "bad-args": ([], ["--dataset", "--data"]),
    "bad-task": (["--dataset", "iris", "--task", "clustering"], ["'clustering'"]),
}


@pytest.fixture(scope="module")
def bad_runs(
    iris_run: subprocess.CompletedProcess[str], bad_tables: Path, prefect_server: str
) -> tuple[dict[str, subprocess.CompletedProcess[str]], list[dict[str, object]]]:
    """Every bad input through `mlops train`, then `mlops models list --json` once.

    Two at a time: each is a separate process and most of its time is Python imports.
    """
    assert iris_run.returncode == 0, iris_run.stderr[-3000:]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(
                run_cli, bad_tables, prefect_server, "train", "--model-name", name, *args
            )
            for name, (args, _) in BAD_INPUTS.items()
        }
        runs = {name: future.result() for name, future in futures.items()}
    return runs, _registered(bad_tables, prefect_server)


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_one_error_line_and_registers_nothing(
    bad_runs: tuple[dict[str, subprocess.CompletedProcess[str]], list[dict[str, object]]],
    name: str,
) -> None:
    runs, registered = bad_runs
    proc = runs[name]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = _error_lines(proc)
    assert len(lines) == 1, proc.stderr
    for word in BAD_INPUTS[name][1]:
        assert word in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "Registered model" not in proc.stdout
    names = {r["name"] for r in registered}
    assert "iris" in names  # the listing read the project's store
    assert name not in names
