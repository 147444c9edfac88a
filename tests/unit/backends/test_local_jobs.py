"""The local backend's processing and transform jobs: real subprocesses, real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlops.backends import (
    ComputeBackend,
    ProcessingJobSpec,
    TransformJobSpec,
    get_backend,
)
from mlops.backends.local import LocalBackend
from mlops.errors import BackendError
from mlops.settings import Settings
from tests.conftest import REPO, make_settings
from tests.unit.backends._models import FEATURES, frame, save_regressor

PROGRAM = "tests.unit.backends._processing_program"
# The job runs in its own folder: the test program is found through the repository root.
ENV = {"PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    path = tmp_path_factory.mktemp("model") / "taxi-model"
    return path, save_regressor(path)


def _csv_folder(folder: Path, header: bool, parts: dict[str, int]) -> dict[str, object]:
    folder.mkdir(parents=True, exist_ok=True)
    frames = {}
    for i, (name, rows) in enumerate(parts.items()):
        data = frame(rows, seed=10 + i)
        data.to_csv(folder / name, index=False, header=header)
        frames[name] = data
    return frames


def test_local_backend_is_a_compute_backend(settings: Settings) -> None:
    backend = get_backend(settings)
    assert isinstance(backend, LocalBackend)
    assert isinstance(backend, ComputeBackend)


def test_processing_job_runs_in_the_processing_layout(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    frames = _csv_folder(tmp_path / "window", True, {"a.csv": 7, "b.csv": 5})
    destination = tmp_path / "stats-out"
    lines: list[str] = []
    result = get_backend(settings).run_processing_job(
        ProcessingJobSpec(
            job_name="baseline-1",
            entry_point=PROGRAM,
            arguments=[
                "--input",
                "/opt/ml/processing/input/window",
                "--output=/opt/ml/processing/output/stats",
            ],
            inputs={"window": str(tmp_path / "window")},
            outputs={"stats": str(destination), "report": None},
            environment=ENV,
        ),
        on_log=lines.append,
    )
    assert result.status == "Completed", result.failure_reason
    root = settings.work_dir.resolve() / "jobs" / "baseline-1"
    assert (root / "processing/input/window/a.csv").is_file()
    written = root / "processing/output/stats/summary.json"
    assert written.is_file()
    # delivered to the destination; an output without one stays in the job's folder
    assert result.outputs["stats"] == str(destination.resolve())
    assert result.outputs["report"] == str(root / "processing/output/report")
    summary = json.loads((destination / "summary.json").read_text())
    assert summary["rows"] == 12
    expected = sum(f["distance"].sum() for f in frames.values())
    assert summary["sums"]["distance"] == pytest.approx(expected)
    config = json.loads((root / "config/processingjobconfig.json").read_text())
    assert config["ProcessingInputs"][0]["S3Input"]["LocalPath"] == (
        "/opt/ml/processing/input/window"
    )
    assert any("read 12 rows" in line for line in lines)


def test_failed_processing_job_reports_its_last_words_and_delivers_nothing(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    _csv_folder(tmp_path / "window", True, {"a.csv": 3})
    destination = tmp_path / "never"
    result = get_backend(settings).run_processing_job(
        ProcessingJobSpec(
            job_name="baseline-bad",
            entry_point=PROGRAM,
            arguments=["--input", "/opt/ml/processing/input/window", "--output", "x", "--fail"],
            inputs={"window": str(tmp_path / "window")},
            outputs={"stats": str(destination)},
            environment=ENV,
        )
    )
    assert result.status == "Failed"
    assert "exited with code 1" in (result.failure_reason or "")
    assert "baseline window is empty" in (result.failure_reason or "")
    assert result.outputs == {}
    assert not destination.exists()


def test_processing_input_that_does_not_exist_is_refused_before_the_job(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(BackendError, match="'window'") as info:
        get_backend(settings).run_processing_job(
            ProcessingJobSpec(
                job_name="no-input",
                entry_point=PROGRAM,
                inputs={"window": str(tmp_path / "missing")},
            )
        )
    assert "does not exist" in str(info.value)
    assert not (settings.work_dir / "jobs" / "no-input").exists()


def test_transform_job_scores_every_file_like_the_endpoint(
    tmp_path: Path, model: tuple[Path, object]
) -> None:
    path, fitted = model
    settings = make_settings(tmp_path)
    frames = _csv_folder(tmp_path / "in", False, {"day1.csv": 40, "day2.csv": 25})
    capture = tmp_path / "capture"
    result = get_backend(settings).run_transform_job(
        TransformJobSpec(
            job_name="score-1",
            model=str(path),
            input_uri=str(tmp_path / "in"),
            output_uri=str(tmp_path / "out"),
            max_payload_mb=1,
            capture_uri=str(capture),
        )
    )
    assert result.status == "Completed", result.failure_reason
    assert result.records == 65
    assert result.output_uri == str((tmp_path / "out").resolve())
    for name, data in frames.items():
        lines = (tmp_path / "out" / f"{name}.out").read_text().splitlines()
        assert len(lines) == len(data)
        expected = fitted.predict(data[FEATURES])  # type: ignore[attr-defined]
        np.testing.assert_allclose(np.array(lines, dtype=float), expected, rtol=1e-5)
    records = [
        json.loads(line)
        for f in sorted(capture.rglob("*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    # one request per file (MultiRecord under 1 MB), captured under the job's name
    assert len(records) == 2
    assert all(
        f.relative_to(capture).parts[:2] == ("score-1", "AllTraffic")
        for f in capture.rglob("*.jsonl")
    )
    assert all(r["eventMetadata"].get("inferenceId") for r in records)
    assert sum(r["captureData"]["endpointInput"]["data"].count("\n") + 1 for r in records) == 65


def test_transform_single_record_json_answers_one_line_per_record(
    tmp_path: Path, model: tuple[Path, object]
) -> None:
    path, fitted = model
    settings = make_settings(tmp_path)
    data = frame(4, seed=3)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.jsonl").write_text(
        "\n".join(json.dumps(r) for r in data.to_dict(orient="records"))
    )
    result = get_backend(settings).run_transform_job(
        TransformJobSpec(
            job_name="score-json",
            model=str(path),
            input_uri=str(tmp_path / "in"),
            output_uri=str(tmp_path / "out"),
            content_type="application/json",
            batch_strategy="SingleRecord",
        )
    )
    assert result.status == "Completed", result.failure_reason
    answers = [json.loads(x) for x in (tmp_path / "out/rows.jsonl.out").read_text().splitlines()]
    assert len(answers) == 4
    got = [a["predictions"][0] for a in answers]
    np.testing.assert_allclose(got, fitted.predict(data[FEATURES]), rtol=1e-5)  # type: ignore[attr-defined]


def test_transform_of_a_bad_record_fails_with_the_servers_answer(
    tmp_path: Path, model: tuple[Path, object]
) -> None:
    path, _ = model
    settings = make_settings(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.csv").write_text("1.0,2,3\nabc,2,3\n")
    result = get_backend(settings).run_transform_job(
        TransformJobSpec(
            job_name="score-bad",
            model=str(path),
            input_uri=str(tmp_path / "in"),
            output_uri=str(tmp_path / "out"),
        )
    )
    assert result.status == "Failed"
    reason = result.failure_reason or ""
    assert reason.startswith("ClientError: bad.csv, request 1")
    assert "400" in reason and "abc" in reason
    assert not (tmp_path / "out").exists()


def test_transform_of_a_model_that_is_not_there_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(BackendError, match="sagemaker"):
        get_backend(settings).run_transform_job(
            TransformJobSpec(
                job_name="score-x", model="taxi-model-v3", input_uri=".", output_uri="out"
            )
        )
    assert not (settings.work_dir / "jobs" / "score-x").exists()
