"""Hyperparameter resolution and model-name validation of the train stage."""

from __future__ import annotations

import pytest

from mlops.errors import ConfigError
from mlops.settings import Settings
from mlops.stages.train import resolve_hyperparameters, validate_model_name


def test_settings_hyperparameters_by_default(settings: Settings) -> None:
    params = resolve_hyperparameters(settings)
    assert params["n_estimators"] == 60  # the fixture's fast training
    assert params["early_stopping_rounds"] == 10
    assert params["max_depth"] == 6
    assert params["tree_method"] == "hist"
    assert "extra" not in params


def test_overrides_apply_and_unknown_names_pass_through(settings: Settings) -> None:
    params = resolve_hyperparameters(
        settings, {"max_depth": 3, "learning_rate": 0.3, "gamma": 0.5, "max_bin": 128}
    )
    assert params["max_depth"] == 3
    assert params["learning_rate"] == 0.3
    assert params["n_estimators"] == 60
    assert params["gamma"] == 0.5  # other XGBoost parameters are passed on as they are
    assert params["max_bin"] == 128
    # the settings themselves are not changed
    assert settings.training.max_depth == 6
    assert settings.training.extra == {}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"max_depth": 0}, "max_depth"),
        ({"n_estimators": -5}, "n_estimators"),
        ({"learning_rate": 2.0}, "learning_rate"),
        ({"subsample": 0}, "subsample"),
        ({"tree_method": "gpu_magic"}, "tree_method"),
        ({"max_depth": "deep"}, "max_depth"),
        ({"early_stopping_rounds": 0}, "early_stopping_rounds"),
    ],
)
def test_bad_hyperparameters_are_config_errors(
    settings: Settings, overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_hyperparameters(settings, overrides)
    assert field in str(info.value)


@pytest.mark.parametrize("name", ["taxi", "taxi-fare", "taxi_fare.v2", "A1", "9lives", "m" * 63])
def test_valid_model_names(name: str) -> None:
    assert validate_model_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-taxi",
        ".hidden",
        "taxi fare",
        "taxi/fare",
        "taxi@prod",
        "m" * 64,
        "naïve",
        "a\nb",
        "taxi\n",
    ],
)
def test_invalid_model_names(name: str) -> None:
    with pytest.raises(ConfigError, match="model name") as info:
        validate_model_name(name)
    assert "letters, digits" in str(info.value)
