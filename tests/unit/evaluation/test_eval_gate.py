from __future__ import annotations

import json
import math

import pytest

from mlops.errors import ConfigError, GateFailedError
from mlops.evaluation.gate import GateResult, check_gate
from mlops.settings_sections import GateSettings, Threshold
from mlops.types import Task

REG_OK = {"rmse": 1.0, "mae": 0.8, "r2": 0.8}


def test_default_threshold_passes_and_fails() -> None:
    ok = check_gate(Task.REGRESSION, REG_OK)
    assert ok.passed and ok.reasons == []
    assert [c.name for c in ok.checks] == ["threshold.r2.min"]

    bad = check_gate(Task.REGRESSION, {**REG_OK, "r2": 0.41})
    assert not bad.passed
    assert bad.reasons == ["r2 = 0.4100 is below the minimum 0.5000 (gate.thresholds.r2.min)"]
    check = bad.checks[0]
    assert (check.metric, check.value, check.bound, check.op, check.passed) == (
        "r2",
        0.41,
        0.5,
        ">=",
        False,
    )


def test_empty_thresholds_use_defaults() -> None:
    result = check_gate(Task.BINARY, {"auc": 0.65, "accuracy": 0.9}, thresholds={})
    assert not result.passed
    assert "auc" in result.reasons[0]


def test_custom_thresholds_min_and_max() -> None:
    thresholds = {"rmse": Threshold(max=0.9), "mae": Threshold(min=0.1, max=1.0)}
    result = check_gate(Task.REGRESSION, REG_OK, thresholds=thresholds)
    assert not result.passed
    assert [c.name for c in result.checks] == [
        "threshold.rmse.max",
        "threshold.mae.min",
        "threshold.mae.max",
    ]
    assert [c.passed for c in result.checks] == [False, True, True]
    assert len(result.reasons) == 1 and "above the maximum" in result.reasons[0]


def test_thresholds_from_gate_settings_and_plain_dicts() -> None:
    settings = GateSettings.model_validate({"thresholds": {"accuracy": {"min": 0.95}}})
    result = check_gate(
        Task.MULTICLASS,
        {"accuracy": 0.9, "macro_f1": 0.9, "logloss": 0.3},
        thresholds=settings.thresholds,
    )
    assert not result.passed
    plain = check_gate(Task.MULTICLASS, {"accuracy": 0.96}, thresholds={"accuracy": {"min": 0.95}})
    assert plain.passed


def test_unknown_metric_raises_config_error_listing_available() -> None:
    with pytest.raises(ConfigError) as err:
        check_gate(Task.REGRESSION, REG_OK, thresholds={"auc": Threshold(min=0.5)})
    message = str(err.value)
    assert "'auc'" in message
    for name in ("rmse", "mae", "r2"):
        assert name in message


def test_threshold_without_bounds_raises() -> None:
    with pytest.raises(ConfigError, match="neither min nor max"):
        check_gate(Task.REGRESSION, REG_OK, thresholds={"r2": Threshold()})


def test_negative_margin_raises() -> None:
    with pytest.raises(ConfigError, match="champion_margin"):
        check_gate(Task.REGRESSION, REG_OK, margin=-0.1)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_metric_fails(value: float) -> None:
    result = check_gate(Task.REGRESSION, {**REG_OK, "r2": value})
    assert not result.passed
    assert "not a finite number" in result.reasons[0]


def test_non_finite_unthresholded_metric_fails() -> None:
    result = check_gate(Task.REGRESSION, {**REG_OK, "mae": math.nan})
    assert not result.passed
    assert any(c.name == "finite.mae" and not c.passed for c in result.checks)


def test_missing_thresholded_metric_fails() -> None:
    result = check_gate(Task.REGRESSION, {"rmse": 1.0})
    assert not result.passed


# --- champion comparison -------------------------------------------------------------------


def test_min_metric_within_margin_passes_and_beyond_fails() -> None:
    champion = {"rmse": 1.0, "mae": 0.8, "r2": 0.8}
    within = check_gate(
        Task.REGRESSION,
        {**REG_OK, "rmse": 1.04},
        champion_metrics=champion,
        champion_version="3",
        margin=0.05,
    )
    assert within.passed
    check = within.checks[-1]
    assert check.name == "champion.rmse" and check.op == "<="
    assert check.bound == pytest.approx(1.05)

    beyond = check_gate(
        Task.REGRESSION,
        {**REG_OK, "rmse": 1.06},
        champion_metrics=champion,
        champion_version="3",
        margin=0.05,
    )
    assert not beyond.passed
    assert len(beyond.reasons) == 1
    assert "champion version 3" in beyond.reasons[0]
    assert "5%" in beyond.reasons[0]


def test_max_metric_within_margin_passes_and_beyond_fails() -> None:
    champion = {"auc": 0.9}
    assert check_gate(Task.BINARY, {"auc": 0.86}, champion_metrics=champion, margin=0.05).passed
    result = check_gate(Task.BINARY, {"auc": 0.85}, champion_metrics=champion, margin=0.05)
    assert not result.passed
    assert result.checks[-1].bound == pytest.approx(0.855)
    assert result.checks[-1].op == ">="


def test_better_challenger_passes_with_zero_margin() -> None:
    assert check_gate(Task.BINARY, {"auc": 0.95}, champion_metrics={"auc": 0.9}, margin=0).passed
    assert not check_gate(
        Task.BINARY, {"auc": 0.89}, champion_metrics={"auc": 0.9}, margin=0
    ).passed


def test_champion_zero_value() -> None:
    champion = {"rmse": 0.0}
    assert check_gate(Task.REGRESSION, {**REG_OK, "rmse": 0.0}, champion_metrics=champion).passed
    assert not check_gate(Task.REGRESSION, REG_OK, champion_metrics=champion).passed


def test_champion_without_primary_metric_is_skipped() -> None:
    result = check_gate(Task.BINARY, {"auc": 0.8}, champion_metrics={"accuracy": 0.9})
    assert result.passed
    assert "skipped" in result.checks[-1].detail


def test_nan_challenger_primary_fails_champion_check() -> None:
    result = check_gate(
        Task.BINARY,
        {"auc": math.nan},
        champion_metrics={"auc": 0.8},
        thresholds={"accuracy": Threshold(min=0.0)},
    )
    assert not result.passed
    assert not result.checks[-1].passed


def test_no_champion_means_no_champion_check() -> None:
    result = check_gate(Task.BINARY, {"auc": 0.8})
    assert all(not c.name.startswith("champion") for c in result.checks)


def test_to_dict_is_json_serializable_and_raise_for_failure() -> None:
    result = check_gate(Task.BINARY, {"auc": math.nan}, champion_metrics={"auc": 0.8})
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["passed"] is False
    assert data["checks"][0]["value"] is None
    assert data["reasons"] == result.reasons
    with pytest.raises(GateFailedError) as err:
        result.raise_for_failure()
    assert err.value.reasons == result.reasons
    GateResult(passed=True).raise_for_failure()
