"""Which models an endpoint may load: code detection and the owner's policy file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mlops.backends.local.gateway.model_policy import (
    ModelNotAllowedError,
    ModelPolicy,
    check_code,
    code_in_model,
    load_policy,
    policy_path,
    resolve_variant_model,
    save_policy,
)
from mlops.errors import EndpointError
from mlops.settings import Settings

XGBOOST = """\
flavors:
  python_function:
    data: model.xgb
    loader_module: mlflow.xgboost
    python_version: 3.11.7
  xgboost:
    code: null
    data: model.xgb
    model_class: xgboost.sklearn.XGBRegressor
    model_format: xgb
"""


def _model(folder: Path, mlmodel: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLmodel").write_text(mlmodel)
    return folder


def test_xgboost_model_runs_no_code(tmp_path: Path) -> None:
    assert code_in_model(_model(tmp_path / "m", XGBOOST)) is None
    assert code_in_model(_model(tmp_path / "bare", "flavors: {}\n")) is None


@pytest.mark.parametrize(
    ("mlmodel", "why"),
    [
        (
            "flavors:\n  python_function:\n    loader_module: evil\n",
            "loader_module 'evil'",
        ),
        (
            "flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n"
            "    python_model: model.py\n",
            "python_model",
        ),
        (
            "flavors:\n  python_function:\n    loader_module: mlflow.xgboost\n    code: code\n",
            "code paths",
        ),
        (
            "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n",
            "loader_module 'mlflow.sklearn'",  # a pickle
        ),
        (
            XGBOOST.replace("xgboost.sklearn.XGBRegressor", "os.system"),
            "model_class 'os.system'",
        ),
    ],
)
def test_code_is_found(tmp_path: Path, mlmodel: str, why: str) -> None:
    folder = _model(tmp_path / "m", mlmodel)
    assert why in (code_in_model(folder) or "")
    with pytest.raises(ModelNotAllowedError, match="runs code.*--allow-code") as caught:
        check_code(folder, ModelPolicy(), "ep")
    assert caught.value.runs_code
    check_code(folder, ModelPolicy(allow_code=True), "ep")  # the owner opted in


def test_model_in_a_subfolder_is_checked(tmp_path: Path) -> None:
    _model(tmp_path / "outer" / "inner", "flavors:\n  python_function:\n    loader_module: x\n")
    assert "loader_module 'x'" in (code_in_model(tmp_path / "outer") or "")


def test_policy_round_trip_owner_only(tmp_path: Path) -> None:
    assert load_policy(tmp_path) == ModelPolicy()  # none yet: registry only, no code
    save_policy(tmp_path, ModelPolicy(allow_code=True, folders=["/models/a"]))
    assert stat.S_IMODE(policy_path(tmp_path).stat().st_mode) == 0o600
    assert load_policy(tmp_path) == ModelPolicy(allow_code=True, folders=["/models/a"])
    policy_path(tmp_path).chmod(0o666)
    with pytest.raises(EndpointError, match="only it can write.*mode 0666"):
        load_policy(tmp_path)


def test_only_chosen_folders_resolve(tmp_path: Path, settings: Settings) -> None:
    chosen = _model(tmp_path / "chosen", XGBOOST)
    other = _model(tmp_path / "other", XGBOOST)
    policy = ModelPolicy(folders=[str(chosen.resolve())])
    folder, name, version = resolve_variant_model(
        settings, policy, "ep", model_ref=None, model_dir=str(chosen)
    )
    assert (folder, name, version) == (str(chosen.resolve()), None, None)
    with pytest.raises(ModelNotAllowedError, match="not a folder the owner") as caught:
        resolve_variant_model(settings, policy, "ep", model_ref=None, model_dir=str(other))
    assert not caught.value.runs_code
    link = tmp_path / "link"
    link.symlink_to(chosen)  # another spelling of the chosen folder is the same folder
    assert resolve_variant_model(settings, policy, "ep", model_ref=None, model_dir=str(link))
    with pytest.raises(EndpointError, match="exactly one"):
        resolve_variant_model(settings, policy, "ep", model_ref=None, model_dir=None)


def test_policy_file_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user")
    save_policy(tmp_path, ModelPolicy(allow_code=True))
    os.chown(policy_path(tmp_path), 65534, 65534)
    with pytest.raises(EndpointError, match="uid 65534"):
        load_policy(tmp_path)
