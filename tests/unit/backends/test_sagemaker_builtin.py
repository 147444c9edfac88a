"""The built-in XGBoost image's contract: hyperparameters, CSV channels, logs, model."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.backends import TrainingJobSpec
from mlops.backends.sagemaker import SageMakerConfig
from mlops.backends.sagemaker.builtin import (
    BuiltinJob,
    builtin_hyperparameters,
    check_builtin_image,
    is_builtin_xgboost,
    parse_round_lines,
)
from mlops.backends.sagemaker.requests import training_request
from mlops.errors import BackendError, ConfigError, DataError
from mlops.stages.train import load_xgboost_model
from mlops.training import CURVES_FILE, METADATA_FILE, MODEL_FILE
from mlops.types import Task
from tests.conftest import make_settings

BUILTIN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ROLE = "arn:aws:iam::123456789012:role/mlops-jobs"


def _ours(task: str = "regression", **extra: Any) -> dict[str, Any]:
    """What the train stage sends: settings' hyperparameters plus the job's keys."""
    return {
        "n_estimators": 60, "max_depth": 4, "learning_rate": 0.1, "subsample": 0.9,
        "colsample_bytree": 0.9, "min_child_weight": 1.0, "reg_lambda": 1.0,
        "early_stopping_rounds": 20, "tree_method": "hist", "n_jobs": 0,
        "target": "y", "task": task, "seed": 42, "classes": "[]", **extra,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (BUILTIN, True),
        ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1", True),
        ("450853457545.dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-xgboost:3.2-0", True),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops:1.0", False),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/my-sagemaker-xgboost:1.0", False),
        ("builtin-xgboost", False),
    ],
)
def test_built_in_image_is_recognised_by_its_repository(image: str, expected: bool) -> None:
    assert is_builtin_xgboost(image) is expected


def test_images_before_2_are_refused_with_the_version_to_use() -> None:
    assert check_builtin_image(BUILTIN) == "3.0-5"
    with pytest.raises(ConfigError, match=r"1\.7-1.*legacy binary.*3\.0-5"):
        check_builtin_image(BUILTIN.replace("3.0-5", "1.7-1"))


def test_our_hyperparameters_in_the_algorithm_s_names() -> None:
    sent = builtin_hyperparameters(_ours())
    assert sent == {
        "objective": "reg:squarederror",
        "eval_metric": "mae,rmse",
        "num_round": "60",
        "max_depth": "4",
        "eta": "0.1",
        "subsample": "0.9",
        "colsample_bytree": "0.9",
        "min_child_weight": "1.0",
        "lambda": "1.0",
        "early_stopping_rounds": "20",
        "tree_method": "hist",
        "seed": "42",
    }
    binary = builtin_hyperparameters(_ours("binary", n_jobs=2, reg_alpha=0.5, gamma=1))
    assert binary["objective"] == "binary:logistic"
    assert binary["eval_metric"].split(",")[-1] == "logloss"  # early stopping watches it
    assert (binary["nthread"], binary["alpha"], binary["gamma"]) == ("2", "0.5", "1")
    multi = builtin_hyperparameters(_ours("multiclass", classes='["a", "b", "c"]'))
    assert (multi["objective"], multi["num_class"]) == ("multi:softprob", "3")
    assert multi["eval_metric"] == "merror,mlogloss"
    chosen = builtin_hyperparameters(
        _ours("binary", eval_metric=["auc"], monotone_constraints=[1, 0, -1])
    )
    assert (chosen["eval_metric"], chosen["monotone_constraints"]) == ("auc", "(1,0,-1)")


def test_a_hyperparameter_the_algorithm_cannot_take_is_refused_by_name() -> None:
    with pytest.raises(ConfigError) as caught:
        builtin_hyperparameters(_ours(max_cat_to_onehot=4, device="cuda"))
    message = str(caught.value)
    assert "'max_cat_to_onehot'" in message and "'device'" in message
    assert "num_round" in message and 'training_image = "project"' in message
    with pytest.raises(ConfigError, match="csv_weights.*weight column"):
        builtin_hyperparameters(_ours(csv_weights=1))
    with pytest.raises(ConfigError, match="objective='reg:tweedie'"):
        builtin_hyperparameters(_ours("binary", objective="reg:tweedie"))
    with pytest.raises(ConfigError, match="num_class"):
        builtin_hyperparameters(_ours("binary", num_class=3))
    with pytest.raises(ConfigError, match="task"):
        builtin_hyperparameters({"n_estimators": 5})


def test_the_request_carries_csv_channels_and_passes_botocore(tmp_path: Path) -> None:
    import botocore.session
    from botocore.validate import validate_parameters

    settings = make_settings(
        tmp_path,
        backend="sagemaker",
        aws={"region": "us-east-1"},
        sagemaker={"role_arn": ROLE, "bucket": "jobs", "training_image": BUILTIN},
    )
    config = SageMakerConfig.from_settings(settings)
    job = BuiltinJob.plan(_ours())
    request = training_request(
        TrainingJobSpec("j-1", {"train": "x"}, _ours()),
        config,
        {"train": "s3://jobs/mlops/j-1/input/train/"},
        hyperparameters=job.hyperparameters,
        content_type="text/csv",
    )
    assert request["AlgorithmSpecification"]["TrainingImage"] == BUILTIN
    assert request["InputDataConfig"][0]["ContentType"] == "text/csv"
    assert request["HyperParameters"]["num_round"] == "60"
    assert "target" not in request["HyperParameters"]
    model = botocore.session.get_session().get_service_model("sagemaker")
    validate_parameters(request, model.operation_model("CreateTrainingJob").input_shape)


def test_channels_are_headerless_csv_with_the_label_first(tmp_path: Path) -> None:
    job = BuiltinJob.plan(_ours("binary", classes="[0, 1]"))
    train = pd.DataFrame({"a": [1.5, np.nan], "y": [0, 1], "flag": [True, False], "n": [3, 4]})
    job.write_channel("train", train, tmp_path / "train")
    assert (tmp_path / "train" / "train.csv").read_text().splitlines() == ["0,1.5,1,3", "1,,0,4"]
    assert job.features == ["a", "flag", "n"]
    assert job.feature_types == ["float", "i", "int"]
    job.write_channel("validation", train[["n", "flag", "y", "a"]], tmp_path / "validation")
    assert (tmp_path / "validation" / "validation.csv").read_text().startswith("0,1.5,1,3")
    with pytest.raises(DataError, match="lacks the feature.*flag"):
        job.write_channel("test", train[["a", "y", "n"]], tmp_path / "t")
    words = BuiltinJob.plan(_ours())
    with pytest.raises(DataError, match="not numeric.*project"):
        words.write_channel("train", pd.DataFrame({"y": [1.0], "s": ["x"]}), tmp_path / "w")
    with pytest.raises(DataError, match="no target column 'y'"):
        words.write_channel("train", pd.DataFrame({"z": [1.0]}), tmp_path / "z")


def test_round_lines_become_learning_curves() -> None:
    lines = [
        "Train matrix has 10 rows and 3 columns",
        "[2026-11-30 10:00:00.000 algo-1:7 INFO hook.py:1] not a round",
        "[0]#011train-rmse:2.00000#011validation-rmse:2.50000#011validation-error@0.5:0.2",
        "[1]\ttrain-rmse:1.50000\tvalidation-rmse:2.00000\tvalidation-error@0.5:0.1",
        "[1]#011train-rmse:1.40000#011validation-rmse:1.90000#011validation-error@0.5:0.1",
        "[3]#011train-rmse:1.0#011validation-rmse:1.5#011validation-error@0.5:0.1",  # a gap
    ]
    assert parse_round_lines(lines) == {
        "train": {"rmse": [2.0, 1.4]},
        "validation": {"rmse": [2.5, 1.9], "error@0.5": [0.2, 0.1]},
    }
    assert parse_round_lines(["[0]#011train-aft-nloglik:3.5"]) == {"train": {"aft-nloglik": [3.5]}}
    assert parse_round_lines(["nothing here", "[0]#011train-rmse:oops"]) == {}


def _algorithm_model(folder: Path, *, early: bool) -> tuple[Any, np.ndarray]:
    """What the algorithm leaves: a booster trained without feature names, as UBJSON."""
    import xgboost as xgb

    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 3))
    y = x[:, 0] * 2 + rng.normal(scale=0.1, size=300)
    train, valid = xgb.DMatrix(x[:200], label=y[:200]), xgb.DMatrix(x[200:], label=y[200:])
    booster = xgb.train(
        {"objective": "reg:squarederror", "seed": 1},
        train,
        num_boost_round=300 if early else 7,
        evals=[(valid, "validation")],
        early_stopping_rounds=3 if early else None,
        verbose_eval=False,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "xgboost-model").write_bytes(bytes(booster.save_raw("ubj")))
    return booster, x


def test_the_algorithm_s_model_becomes_the_project_image_s_folder(tmp_path: Path) -> None:
    import xgboost as xgb

    booster, x = _algorithm_model(tmp_path / "model", early=True)
    job = BuiltinJob.plan(_ours())
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(y=0.0)
    job.write_channel("train", frame, tmp_path / "csv")
    curves = {"validation": {"rmse": [1.0, 0.5]}}
    metadata = job.adopt_model(tmp_path / "model", tmp_path / "data", curves, image=BUILTIN)
    assert metadata["best_iteration"] == booster.best_iteration < booster.num_boosted_rounds() - 1
    assert metadata["early_stopped"] is True
    assert metadata["rounds"] == booster.num_boosted_rounds()
    assert metadata["features"] == ["a", "b", "c"] and metadata["n_train"] == 300
    assert json.loads((tmp_path / "model" / METADATA_FILE).read_text()) == metadata
    assert json.loads((tmp_path / "data" / CURVES_FILE).read_text()) == curves
    assert not (tmp_path / "model" / "xgboost-model").exists()
    model = load_xgboost_model(tmp_path / "model", Task.REGRESSION)
    assert list(model.get_booster().feature_names) == ["a", "b", "c"]
    expected = booster.predict(xgb.DMatrix(x), iteration_range=(0, booster.best_iteration + 1))
    np.testing.assert_allclose(model.predict(frame[["a", "b", "c"]]), expected, rtol=1e-6)

    _algorithm_model(tmp_path / "plain", early=False)
    plain = BuiltinJob.plan(_ours())
    plain.write_channel("train", frame, tmp_path / "csv2")
    metadata = plain.adopt_model(tmp_path / "plain", tmp_path / "none", None, image=BUILTIN)
    assert (metadata["best_iteration"], metadata["rounds"], metadata["early_stopped"]) == (
        6,
        7,
        False,
    )
    assert not (tmp_path / "none" / CURVES_FILE).exists()
    assert (tmp_path / "plain" / MODEL_FILE).is_file()


def test_a_pickled_or_foreign_model_is_refused_not_loaded(tmp_path: Path) -> None:
    job = BuiltinJob.plan(_ours())
    job.write_channel("train", pd.DataFrame({"a": [1.0], "y": [2.0]}), tmp_path / "csv")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "xgboost-model").write_bytes(pickle.dumps({"not": "a booster"}))
    with pytest.raises(BackendError, match="pickle.*3.0-5"):
        job.adopt_model(tmp_path / "m", tmp_path / "d", None, image=BUILTIN)
    (tmp_path / "n").mkdir()
    with pytest.raises(BackendError, match="no xgboost-model"):
        job.adopt_model(tmp_path / "n", tmp_path / "d", None, image=BUILTIN)
    _algorithm_model(tmp_path / "wide", early=False)  # 3 features, the channels had 1
    with pytest.raises(BackendError, match="3 features but the channels had 1"):
        job.adopt_model(tmp_path / "wide", tmp_path / "d", None, image=BUILTIN)
