"""Loading served models: the native XGBoost path answers exactly as mlflow.pyfunc does."""

from __future__ import annotations

import math
import shutil
import textwrap
from pathlib import Path

import mlflow.pyfunc
import mlflow.xgboost
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from mlflow.models import infer_signature

from mlops.errors import ModelNotFoundError, ServingError
from mlops.serving.model import (
    ServingModel,
    find_model_dir,
    parse_model_ref,
    resolve_model,
)
from mlops.settings import Settings

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*Add type hints:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*input example was not provided:UserWarning"),
    pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer:UserWarning"),
]

FEATURES = ["count", "x1", "x2", "x3"]
REQUIREMENTS = ["mlflow", "xgboost"]  # given, so MLflow does not infer them in a subprocess


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "count": rng.integers(0, 6, n),
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n) * 10,
            "x3": rng.uniform(size=n),
        }
    )


def _save(model: object, path: Path, frame: pd.DataFrame) -> Path:
    mlflow.xgboost.save_model(
        model,
        str(path),
        signature=infer_signature(frame, model.predict(frame)),  # type: ignore[attr-defined]
        model_format="ubj",
        pip_requirements=REQUIREMENTS,
    )
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    train, valid = _frame(600, 1), _frame(200, 2)
    y = 2 * train["count"] + train["x1"] ** 2 + 0.1 * train["x2"]
    y_valid = 2 * valid["count"] + valid["x1"] ** 2 + 0.1 * valid["x2"]
    params = {"n_estimators": 80, "max_depth": 3, "learning_rate": 0.3, "n_jobs": 1}
    regressor = xgb.XGBRegressor(**params, early_stopping_rounds=3)
    regressor.fit(train, y, eval_set=[(valid, y_valid)], verbose=False)
    assert regressor.best_iteration < 79  # the fast path must honour early stopping
    binary = xgb.XGBClassifier(**params)
    binary.fit(train, (y > y.median()).astype(int))
    multi = xgb.XGBClassifier(**params)
    multi.fit(train, pd.cut(y, 3, labels=False))
    booster = xgb.train({"max_depth": 3}, xgb.DMatrix(train, y), num_boost_round=10)
    paths = {
        "regressor": _save(regressor, root / "regressor", train),
        "binary": _save(binary, root / "binary", train),
        "multi": _save(multi, root / "multi", train),
    }
    mlflow.xgboost.save_model(
        booster,
        str(root / "booster"),
        signature=infer_signature(train, booster.predict(xgb.DMatrix(train))),
        model_format="ubj",
        pip_requirements=REQUIREMENTS,
    )
    paths["booster"] = root / "booster"
    code = root / "code_model.py"
    code.write_text(
        textwrap.dedent(
            """
            import mlflow
            from mlflow.pyfunc import PythonModel


            class Doubler(PythonModel):
                def predict(self, context, model_input, params=None):
                    if (model_input["x3"] > 100).any():
                        raise ValueError("x3 over 100 breaks this model")
                    return model_input["x1"] * 2 + model_input["count"]


            mlflow.models.set_model(Doubler())
            """
        )
    )
    mlflow.pyfunc.save_model(
        str(root / "pyfunc"),
        python_model=str(code),
        signature=infer_signature(train, train["x1"]),
        pip_requirements=REQUIREMENTS,
    )
    paths["pyfunc"] = root / "pyfunc"
    return paths


def _rows(frame: pd.DataFrame) -> list[list[float]]:
    return frame.astype("float64").to_numpy().tolist()


@pytest.mark.parametrize("kind", ["regressor", "binary", "multi", "booster", "pyfunc"])
def test_predictions_equal_pyfunc(models: dict[str, Path], kind: str) -> None:
    frame = _frame(300, 3)
    model = ServingModel.load(models[kind])
    assert model.feature_names == tuple(FEATURES)
    assert model.flavor == ("pyfunc" if kind == "pyfunc" else "xgboost")
    expected = np.asarray(mlflow.pyfunc.load_model(str(models[kind])).predict(frame))
    many = model.predict(_rows(frame))
    one = [model.predict([row])[0] for row in _rows(frame.head(20))]
    np.testing.assert_allclose(np.asarray(many, dtype=float), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(one, dtype=float), expected[:20], rtol=1e-6, atol=1e-6)
    if kind in ("binary", "multi"):
        assert all(type(v) is int for v in many)
        assert set(many) == set(expected.tolist())


def test_tasks(models: dict[str, Path]) -> None:
    assert ServingModel.load(models["regressor"]).task == "regression"
    assert ServingModel.load(models["binary"]).task == "binary"
    assert ServingModel.load(models["multi"]).task == "multiclass"


def test_missing_values_are_xgboosts_native_missing(models: dict[str, Path]) -> None:
    frame = _frame(5, 4)
    frame["x1"] = np.nan
    model = ServingModel.load(models["regressor"])
    expected = mlflow.pyfunc.load_model(str(models["regressor"])).predict(frame)
    got = model.predict(_rows(frame))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert not any(math.isnan(v) for v in got)


def test_pyfunc_model_error_propagates(models: dict[str, Path]) -> None:
    model = ServingModel.load(models["pyfunc"])
    with pytest.raises(ValueError, match="x3 over 100"):
        model.predict([[1, 2, 3, 1000]])


def test_fast_path_can_be_turned_off(models: dict[str, Path]) -> None:
    model = ServingModel.load(models["regressor"], fast=False)
    assert model.flavor == "pyfunc"
    fast = ServingModel.load(models["regressor"])
    rows = _rows(_frame(10, 5))
    np.testing.assert_allclose(model.predict(rows), fast.predict(rows), rtol=1e-6)


def test_model_dir_may_hold_the_model_one_level_down(
    models: dict[str, Path], tmp_path: Path
) -> None:
    shutil.copytree(models["regressor"], tmp_path / "unpacked" / "model")
    assert find_model_dir(tmp_path / "unpacked") == tmp_path / "unpacked" / "model"


def test_bad_model_dirs_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ServingError, match="does not exist; give --model-dir"):
        find_model_dir(tmp_path / "nope")
    (tmp_path / "stuff.txt").write_text("x")
    with pytest.raises(ServingError, match=r"no MLmodel file in .* \(it holds: stuff.txt\)"):
        find_model_dir(tmp_path)


def test_damaged_xgboost_file_is_a_serving_error(models: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(models["regressor"], broken)
    (broken / "model.ubj").write_bytes(b"not a model")
    with pytest.raises(ServingError, match="cannot load the XGBoost model"):
        ServingModel.load(broken)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("taxi", ("taxi", None, "champion")),
        ("taxi@challenger", ("taxi", None, "challenger")),
        ("taxi/3", ("taxi", "3", None)),
        ("models:/taxi/3", ("taxi", "3", None)),
        ("models:/taxi@champion", ("taxi", None, "champion")),
        ("models:/taxi-fare.v2/latest", ("taxi-fare.v2", "latest", None)),
    ],
)
def test_parse_model_ref(ref: str, expected: tuple[str, str | None, str | None]) -> None:
    assert parse_model_ref(ref) == expected


@pytest.mark.parametrize("ref", ["", "models:/", "taxi/x/y", "taxi@", "@x", "taxi/-1"])
def test_bad_model_ref(ref: str) -> None:
    with pytest.raises(ServingError, match="not understood"):
        parse_model_ref(ref)


def test_resolve_downloads_once_and_reuses(trained_taxi: tuple[Settings, str]) -> None:
    settings, version = trained_taxi
    first = resolve_model(settings, "taxi@challenger")
    assert (first.name, first.version) == ("taxi", version)
    assert first.path == (settings.work_dir / "models" / "taxi" / version).resolve()
    stamp = (first.path / "MLmodel").stat().st_mtime_ns
    again = resolve_model(settings, f"models:/taxi/{version}")
    assert again == first
    assert (again.path / "MLmodel").stat().st_mtime_ns == stamp
    assert not [p for p in first.path.parent.iterdir() if p.name.startswith(".download")]
    assert ServingModel.load(first.path).feature_names[0] == "duration_minutes"


def test_resolve_errors_name_what_exists(trained_taxi: tuple[Settings, str]) -> None:
    import re

    from mlops.tracking import connect

    settings, version = trained_taxi
    # the session's model may hold versions other tests registered: name what the store holds
    client = connect(settings)
    versions = sorted(int(v.version) for v in client.search_model_versions("name='taxi'"))
    assert int(version) in versions
    aliases = sorted(client.get_registered_model("taxi").aliases)
    assert "champion" not in aliases
    with pytest.raises(
        ModelNotFoundError, match=rf"no alias 'champion' \(aliases: {', '.join(aliases)}\)"
    ):
        resolve_model(settings, "taxi")
    listed = re.escape(", ".join(str(v) for v in versions))
    with pytest.raises(ModelNotFoundError, match=rf"no version 99 \(versions: {listed}\)"):
        resolve_model(settings, "taxi/99")
    with pytest.raises(ModelNotFoundError, match=r"'nope' does not exist \(registered: .*taxi"):
        resolve_model(settings, "nope@champion")
