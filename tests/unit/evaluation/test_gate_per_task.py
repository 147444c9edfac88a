"""Gate thresholds per task, per model and per run, checked before any work."""

from __future__ import annotations

import pytest

from mlops.errors import ConfigError
from mlops.evaluation.gate import check_gate
from mlops.evaluation.thresholds import (
    merge_overrides,
    parse_gate_option,
    resolve_thresholds,
    validate_gate,
)
from mlops.settings_sections import GateSettings, Threshold


def _gate(**data: object) -> GateSettings:
    return GateSettings.model_validate(data)


def test_flat_threshold_of_another_task_does_not_break_a_multiclass_training() -> None:
    gate = _gate(thresholds={"r2": {"min": 0.6}})
    multiclass = resolve_thresholds(gate, "multiclass", "iris")
    assert multiclass.thresholds == {"accuracy": Threshold(min=0.7)}  # the task's default
    regression = resolve_thresholds(gate, "regression", "taxi")
    assert regression.thresholds == {"r2": Threshold(min=0.6)}
    assert regression.sources == {"r2": "gate.thresholds.r2"}


def test_task_tables_apply_to_their_task_only() -> None:
    gate = _gate(
        regression={"thresholds": {"r2": {"min": 0.3}}},
        multiclass={"thresholds": {"accuracy": {"min": 0.9}}},
    )
    assert resolve_thresholds(gate, "regression").thresholds == {"r2": Threshold(min=0.3)}
    multi = resolve_thresholds(gate, "multiclass")
    assert multi.thresholds == {"accuracy": Threshold(min=0.9)}
    assert multi.sources == {"accuracy": "gate.multiclass.thresholds.accuracy"}
    assert resolve_thresholds(gate, "binary").thresholds == {"auc": Threshold(min=0.7)}


def test_layers_win_bound_by_bound_model_over_task_over_flat_and_run_over_all() -> None:
    gate = _gate(
        thresholds={"rmse": {"max": 10.0}, "r2": {"min": 0.1}},
        regression={"thresholds": {"r2": {"min": 0.4, "max": 0.99}}},
        models={"taxi": {"thresholds": {"r2": {"min": 0.6}}}},
        overrides={"rmse": {"max": 4.0}},
    )
    taxi = resolve_thresholds(gate, "regression", "taxi")
    assert taxi.thresholds == {"rmse": Threshold(max=4.0), "r2": Threshold(min=0.6, max=0.99)}
    assert taxi.sources == {"rmse": "--gate rmse", "r2": "gate.models.taxi.thresholds.r2"}
    other = resolve_thresholds(gate, "regression", "fares")  # the taxi table is not its own
    assert other.thresholds["r2"] == Threshold(min=0.4, max=0.99)


def test_task_table_naming_another_tasks_metric_fails_before_any_work() -> None:
    gate = _gate(multiclass={"thresholds": {"r2": {"min": 0.3}}})
    with pytest.raises(ConfigError) as info:
        validate_gate(gate)
    message = str(info.value)
    assert "gate.multiclass.thresholds.r2" in message
    assert "accuracy, macro_f1, logloss" in message
    assert "[gate.regression.thresholds.r2]" in message  # where it belongs


def test_unknown_metric_fails_wherever_it_is() -> None:
    for gate in (
        _gate(thresholds={"r2s": {"min": 0.3}}),
        _gate(models={"taxi": {"thresholds": {"rsme": {"max": 3}}}}),
    ):
        with pytest.raises(ConfigError, match="no model produces a metric"):
            validate_gate(gate)


def test_model_table_with_a_metric_its_task_lacks_fails_once_the_task_is_known() -> None:
    gate = _gate(models={"iris": {"thresholds": {"r2": {"min": 0.3}}}})
    validate_gate(gate)  # r2 is a metric; whether iris produces it depends on its task
    with pytest.raises(ConfigError, match=r"gate.models.iris.thresholds.r2: model 'iris' is"):
        resolve_thresholds(gate, "multiclass", "iris")


def test_a_bound_is_required_and_min_may_not_exceed_max() -> None:
    with pytest.raises(ConfigError, match="sets neither min nor max"):
        validate_gate(_gate(binary={"thresholds": {"auc": {}}}))
    with pytest.raises(ConfigError, match="min 0.9 above max 0.5"):
        validate_gate(_gate(thresholds={"r2": {"min": 0.9, "max": 0.5}}))


@pytest.mark.parametrize(
    ("text", "metric", "threshold"),
    [
        ("r2>=0.3", "r2", Threshold(min=0.3)),
        ("rmse<=5", "rmse", Threshold(max=5.0)),
        (" accuracy >= 0.85 ", "accuracy", Threshold(min=0.85)),
        ("logloss<=1e-1", "logloss", Threshold(max=0.1)),
    ],
)
def test_gate_option_parses(text: str, metric: str, threshold: Threshold) -> None:
    assert parse_gate_option(text) == (metric, threshold)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("r2=>0.3", "is not METRIC>=NUMBER"),
        ("r2>0.3", "is not METRIC>=NUMBER"),
        ("r2", "is not METRIC>=NUMBER"),
        ("r2>=abc", "'abc' is not a finite number"),
        ("r2>=inf", "'inf' is not a finite number"),
        ("r3>=0.3", "no model produces a metric 'r3'"),
    ],
)
def test_malformed_gate_option_is_one_clear_line(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_gate_option(text)
    message = str(info.value)
    assert words in message
    assert f"--gate {text!r}" in message
    assert "\n" not in message


def test_repeated_gate_options_merge_bound_by_bound() -> None:
    merged = merge_overrides({}, [parse_gate_option("r2>=0.3"), parse_gate_option("r2<=0.99")])
    assert merged == {"r2": Threshold(min=0.3, max=0.99)}


def test_gate_messages_name_where_the_threshold_was_set() -> None:
    gate = _gate(multiclass={"thresholds": {"accuracy": {"min": 0.9}}}, overrides={})
    chosen = resolve_thresholds(gate, "multiclass", "iris")
    result = check_gate(
        "multiclass",
        {"accuracy": 0.8, "macro_f1": 0.8, "logloss": 0.5},
        thresholds=chosen.thresholds,
        sources=chosen.sources,
    )
    assert not result.passed
    assert result.reasons == [
        "accuracy = 0.8000 is below the minimum 0.9000 (gate.multiclass.thresholds.accuracy.min)"
    ]
    run = resolve_thresholds(_gate(overrides={"accuracy": {"min": 0.95}}), "multiclass")
    result = check_gate(
        "multiclass",
        {"accuracy": 0.9},
        thresholds=run.thresholds,
        sources=run.sources,
    )
    assert result.reasons == ["accuracy = 0.9000 is below the minimum 0.9500 (--gate accuracy)"]
