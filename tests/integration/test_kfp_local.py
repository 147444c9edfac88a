"""The compiled Kubeflow training pipeline runs end to end under ``kfp.local`` (every
component in a subprocess, settings from the environment) to a registered model: the same
one ``run_training_pipeline`` gives on the same data, so that one registers nothing new."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from mlops.pipelines import TRAINING, run_training_pipeline
from mlops.pipelines.kfp import build_pipeline
from mlops.settings import load_settings
from mlops.tracking import Tags, connect

kfp = pytest.importorskip("kfp")
from kfp import local  # noqa: E402
from kfp.components import load_component_from_file  # noqa: E402

pytestmark = pytest.mark.slow


def test_the_compiled_pipeline_runs_under_kfp_local_to_the_same_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work_dir = tmp_path / ".mlops"
    # the components' settings come from the environment they run in, as in a pod
    monkeypatch.setenv("MLOPS_WORK_DIR", str(work_dir))
    monkeypatch.setenv("MLOPS_TRACKING_URI", f"sqlite:///{work_dir.resolve()}/mlflow.db")
    monkeypatch.setenv("MLOPS_TRAINING__N_ESTIMATORS", "60")
    monkeypatch.setenv("MLOPS_TRAINING__EARLY_STOPPING_ROUNDS", "10")
    monkeypatch.setenv("MLOPS_TRAINING__N_JOBS", "2")
    monkeypatch.chdir(tmp_path)

    pipeline = build_pipeline(TRAINING, image="mlops:test", default_model="iris")
    compiled = tmp_path / "training.yaml"
    kfp.compiler.Compiler().compile(pipeline, package_path=str(compiled))
    spec = load_component_from_file(str(compiled)).pipeline_spec
    assert spec == pipeline.pipeline_spec  # what runs below is what was compiled

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    with warnings.catch_warnings():  # the image is not named like a python one
        warnings.filterwarnings("ignore", "You may be attemping", RuntimeWarning)
        run_id = pipeline(dataset="iris").output

    settings = load_settings()
    client = connect(settings)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"  # the last component closed it
    assert run.data.tags[Tags.MODEL_NAME] == "iris"
    version = client.get_model_version("iris", "1")
    assert version.run_id == run_id

    whole = run_training_pipeline(settings, model_name="iris", dataset="iris")
    assert whole.trained.fingerprint == version.tags[Tags.FINGERPRINT]
    assert whole.registered.version == "1" and not whole.registered.created
