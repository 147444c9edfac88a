from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlops.monitoring.baseline import (
    Violation,
    build_constraints,
    build_statistics,
    check_constraints,
    reference_sample,
    violations_report,
)


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [20, 30, 40, 50, 60],
            "income": [1.5, 2.5, np.nan, 4.5, 10.5],
            "delta": [-1.0, 0.0, 1.0, 2.0, 3.0],
            "city": ["a", "b", "a", None, "a"],
        }
    )


def _feature(doc: dict, name: str) -> dict:
    return next(f for f in doc["features"] if f["name"] == name)


def _types(violations: list[Violation]) -> set[tuple[str, str]]:
    return {(v.feature_name, v.constraint_check_type) for v in violations}


def test_statistics_values(frame: pd.DataFrame) -> None:
    stats = build_statistics(frame)
    assert stats["version"] == 0.0
    assert stats["dataset"] == {"item_count": 5}
    assert [f["name"] for f in stats["features"]] == ["age", "income", "delta", "city"]

    age = _feature(stats, "age")
    assert age["inferred_type"] == "Integral"
    num = age["numerical_statistics"]
    assert num["common"] == {"num_present": 5, "num_missing": 0}
    assert num["mean"] == 40.0 and num["sum"] == 200.0
    assert num["std_dev"] == pytest.approx(np.std([20, 30, 40, 50, 60]))
    assert (num["min"], num["max"]) == (20.0, 60.0)
    assert num["quantiles"]["p50"] == 40.0
    assert set(num["quantiles"]) == {"p01", "p05", "p25", "p50", "p75", "p95", "p99"}
    hist = num["distribution"]["histogram"]
    assert sum(hist["counts"]) == 5
    assert len(hist["bin_edges"]) == len(hist["counts"]) + 1

    income = _feature(stats, "income")
    assert income["inferred_type"] == "Fractional"
    assert income["numerical_statistics"]["common"] == {"num_present": 4, "num_missing": 1}
    assert income["numerical_statistics"]["mean"] == pytest.approx(19.0 / 4)

    city = _feature(stats, "city")
    assert city["inferred_type"] == "String"
    s = city["string_statistics"]
    assert s["common"] == {"num_present": 4, "num_missing": 1}
    assert s["distinct_count"] == 2
    assert s["top_values"] == {"a": 3, "b": 1}


def test_statistics_and_constraints_are_plain_json(frame: pd.DataFrame) -> None:
    frame = frame.assign(
        empty=np.nan, flag=[True, False, True, True, False], inf=[1.0, np.inf, 2.0, 3.0, -np.inf]
    )
    stats = build_statistics(frame)
    constraints = build_constraints(frame, stats)
    for doc in (stats, constraints):
        assert json.loads(json.dumps(doc, allow_nan=False)) == doc
    empty = _feature(stats, "empty")["numerical_statistics"]
    assert empty["mean"] is None and empty["quantiles"]["p50"] is None
    assert _feature(stats, "flag")["inferred_type"] == "Integral"
    assert _feature(stats, "inf")["numerical_statistics"]["common"]["num_missing"] == 2


def test_statistics_do_not_mutate_frame() -> None:
    frame = pd.DataFrame({"x": [1.0, np.inf, 3.0]})
    build_statistics(frame)
    assert np.isinf(frame["x"].iloc[1])


def test_constraints_values(frame: pd.DataFrame) -> None:
    constraints = build_constraints(frame)
    assert constraints["version"] == 0.0
    config = constraints["monitoring_config"]
    assert config["range_tolerance"] == 0.1
    assert config["distribution_constraints"] == {
        "perform_comparison": "Enabled",
        "comparison_threshold": 0.1,
        "comparison_method": "Robust",
    }
    age = _feature(constraints, "age")
    assert age["completeness"] == 1.0
    assert age["num_constraints"] == {"is_non_negative": True, "min": 16.0, "max": 64.0}
    assert _feature(constraints, "income")["completeness"] == pytest.approx(0.8)
    assert _feature(constraints, "delta")["num_constraints"]["is_non_negative"] is False
    city = _feature(constraints, "city")
    assert city["inferred_type"] == "String" and "num_constraints" not in city


def test_baseline_frame_conforms(frame: pd.DataFrame) -> None:
    assert check_constraints(frame, build_constraints(frame)) == []


def test_missing_and_extra_columns(frame: pd.DataFrame) -> None:
    constraints = build_constraints(frame)
    new = frame.drop(columns=["city"]).assign(extra=1)
    assert _types(check_constraints(new, constraints)) == {
        ("city", "missing_column_check"),
        ("extra", "extra_column_check"),
    }


def test_data_type_check(frame: pd.DataFrame) -> None:
    constraints = build_constraints(frame)
    new = frame.assign(age=["x", "y", "z", "w", "v"])
    violations = check_constraints(new, constraints)
    assert _types(violations) == {("age", "data_type_check")}
    assert "'age'" in violations[0].description and "'x'" in violations[0].description


def test_integral_and_fractional_are_compatible(frame: pd.DataFrame) -> None:
    constraints = build_constraints(frame)
    new = frame.assign(age=frame["age"].astype(float), delta=[-1, 0, 1, 2, 3])
    assert check_constraints(new, constraints) == []
    numeric_strings = frame.assign(age=["20", "30", "40", "50", "60"])
    assert check_constraints(numeric_strings, constraints) == []


def test_completeness_check(frame: pd.DataFrame) -> None:
    constraints = build_constraints(frame)
    new = frame.assign(age=[20, None, None, 50, 60], city=[None] * 5)
    violations = check_constraints(new, constraints)
    assert _types(violations) == {("age", "completeness_check"), ("city", "completeness_check")}
    age = next(v for v in violations if v.feature_name == "age")
    assert "60.00%" in age.description and "100.00%" in age.description


def test_range_and_non_negative_checks(frame: pd.DataFrame) -> None:
    constraints = build_constraints(frame)
    new = frame.assign(age=[20, 30, 40, 50, 100])
    violations = check_constraints(new, constraints)
    assert _types(violations) == {("age", "range_check")}
    assert "64" in violations[0].description and "100" in violations[0].description

    # -1 is below the widened minimum 16 and negative
    new = frame.assign(age=[20, 30, 40, 50, -1])
    assert _types(check_constraints(new, constraints)) == {
        ("age", "range_check"),
        ("age", "non_negative_check"),
    }


def test_non_negative_without_range_violation() -> None:
    base = pd.DataFrame({"x": [0.0, 10.0]})  # widened range [-1, 11]
    violations = check_constraints(pd.DataFrame({"x": [-0.5, 5.0]}), build_constraints(base))
    assert _types(violations) == {("x", "non_negative_check")}
    assert "-0.5" in violations[0].description


def test_values_within_widened_range_pass() -> None:
    base = pd.DataFrame({"x": [0.0, 10.0]})
    assert check_constraints(pd.DataFrame({"x": [10.9, 0.5]}), build_constraints(base)) == []


def test_violation_report_is_json() -> None:
    report = violations_report([Violation("a", "range_check", "out")])
    assert json.loads(json.dumps(report)) == {
        "violations": [
            {"feature_name": "a", "constraint_check_type": "range_check", "description": "out"}
        ]
    }


def test_bad_constraints_raise(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="features"):
        check_constraints(frame, {})


def test_reference_sample() -> None:
    frame = pd.DataFrame({"x": range(100)})
    a = reference_sample(frame, 10, seed=1)
    b = reference_sample(frame, 10, seed=1)
    assert len(a) == 10 and a["x"].is_unique
    pd.testing.assert_frame_equal(a, b)
    assert not reference_sample(frame, 10, seed=2).equals(a)
    assert len(reference_sample(frame, 500, seed=1)) == 100
    with pytest.raises(ValueError, match="at least 1"):
        reference_sample(frame, 0, seed=1)
