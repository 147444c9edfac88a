"""Hyperparameters are checked before any work: names, types, ranges, XGBoost's own values."""

from __future__ import annotations

import pytest

from mlops.errors import ConfigError
from mlops.hyperparams import validate_hyperparameters
from mlops.settings_sections import TrainingSettings


def _error(overrides: dict, training: TrainingSettings | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        validate_hyperparameters(training or TrainingSettings(), overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_name_is_refused_with_the_known_ones() -> None:
    message = _error({"nonsense": 1})
    assert message.startswith("-p nonsense: 'nonsense' is not an XGBoost parameter")
    assert "max_depth" in message and "gamma" in message  # ours and XGBoost's


def test_misspelt_name_gets_a_suggestion() -> None:
    assert "did you mean 'max_depth'?" in _error({"max_dept": 3})


def test_wrong_type_is_one_line_with_the_rule_and_an_example() -> None:
    message = _error({"max_depth": "banana"})
    assert message.startswith("-p max_depth: 'banana' is not valid")
    assert "must be an integer >= 1 and <= 64" in message
    assert "e.g. -p max_depth=6" in message


def test_out_of_range_value_is_refused() -> None:
    assert "must be a number > 0 and <= 1" in _error({"learning_rate": 2})


def test_names_mlops_sets_itself_are_refused() -> None:
    assert "sets the objective from the task" in _error({"objective": "reg:squarederror"})


def test_xgboost_checks_the_values_of_its_own_parameters() -> None:
    message = _error({"grow_policy": "weird"})
    assert message.startswith("-p grow_policy: XGBoost rejects grow_policy='weird'")
    assert "depthwise" in message


def test_unknown_name_in_the_project_file_is_refused_too() -> None:
    training = TrainingSettings(extra={"nonsens": 1})
    assert "[training] nonsens in mlops.toml" in _error({}, training)


def test_good_overrides_pass_and_merge() -> None:
    params = validate_hyperparameters(TrainingSettings(), {"max_depth": 3, "gamma": 0.5})
    assert params["max_depth"] == 3
    assert params["gamma"] == 0.5
