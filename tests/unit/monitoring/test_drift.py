"""detect_drift against Evidently 0.7's DataDriftPreset on the same data, branch by branch."""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.errors import DataError
from mlops.monitoring.drift import (
    DriftResult,
    ReferenceProfile,
    detect_drift,
    infer_column_kind,
)
from mlops.monitoring.stattests import METHOD_DISPLAY_NAMES

evidently = pytest.importorskip("evidently")

NUMERICAL = ["cont", "few", "binary", "constant", "nan_inf", "int_wide", "ref_few", "prediction"]
CATEGORICAL = ["cat", "cat_binary", "flag"]


def _frame(rng: np.random.Generator, n: int, *, shift: float, new_key: bool) -> pd.DataFrame:
    """One column per branch of the default test choice, NaN and ±inf included."""
    few_values = [1.0, 2.0, 3.0, 4.0]
    p_few = [0.1, 0.2, 0.3, 0.4] if not shift else [0.4, 0.3, 0.2, 0.1]
    if new_key:  # a value seen only in current
        few_values, p_few = few_values + [5.0], [p * 0.9 for p in p_few] + [0.1]
    nan_inf = rng.normal(shift, 1.0, n)
    nan_inf[rng.random(n) < 0.1] = np.nan
    nan_inf[rng.random(n) < 0.03] = np.inf
    nan_inf[rng.random(n) < 0.03] = -np.inf
    nan_inf[0] = np.nan  # every side holding ±inf also holds NaN (see the module docstring)
    cats = list("abcd") + (["e"] if new_key else [])
    return pd.DataFrame(
        {
            "cont": rng.normal(shift, 1.0, n),
            "few": rng.choice(few_values, n, p=p_few),
            "binary": rng.choice([0.0, 1.0], n, p=[0.5, 0.5] if not shift else [0.35, 0.65]),
            "constant": np.full(n, 7.0),
            "nan_inf": nan_inf,
            "int_wide": rng.integers(0, 100 + int(shift * 100), n),
            # reference has 3 values; a shifted current is continuous
            "ref_few": rng.normal(shift, 1.0, n) if shift else rng.choice([0.0, 1.0, 2.0], n),
            "prediction": rng.gamma(2.0 + shift, 1.0, n),
            "cat": rng.choice(cats, n),
            "cat_binary": rng.choice(["yes", "no"], n, p=[0.5, 0.5] if not shift else [0.4, 0.6]),
            "flag": rng.random(n) < (0.3 + shift / 4),
        }
    )


def _evidently(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: list[str] | None,
    categorical: list[str] | None,
    drift_share: float = 0.5,
) -> dict[str, Any]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    with warnings.catch_warnings():  # Evidently's own numpy warnings on inf/NaN
        warnings.simplefilter("ignore")
        if numerical is None and categorical is None:
            cur, ref = Dataset.from_pandas(current), Dataset.from_pandas(reference)
        else:
            definition = DataDefinition(
                numerical_columns=numerical, categorical_columns=categorical
            )
            cur = Dataset.from_pandas(current, data_definition=definition)
            ref = Dataset.from_pandas(reference, data_definition=definition)
        snapshot = Report([DataDriftPreset(drift_share=drift_share)], include_tests=True).run(
            cur, ref
        )
    out: dict[str, Any] = {"scores": {}, "methods": {}, "thresholds": {}, "drifted": {}}
    doc = snapshot.dict()
    for metric in doc["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift"):
            out["scores"][config["column"]] = metric["value"]
            out["methods"][config["column"]] = config["method"]
            out["thresholds"][config["column"]] = config["threshold"]
        elif config["type"].endswith(":DriftedColumnsCount"):
            out["count"] = int(metric["value"]["count"])
            out["share"] = metric["value"]["share"]
    for test in doc["tests"]:
        failed = str(test["status"]).endswith("FAIL")
        if test["id"] == "drift":
            out["drifted"][test["metric_config"]["params"]["column"]] = failed
        elif test["id"] == "lt":
            out["dataset_drifted"] = failed
    return out


def _same_score(ours: float, theirs: float) -> bool:
    return math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-12)


def _assert_same(result: DriftResult, ev: dict[str, Any]) -> None:
    assert set(result.columns) == set(ev["scores"])
    for name, col in result.columns.items():
        assert METHOD_DISPLAY_NAMES[col.method] == ev["methods"][name], name
        assert col.threshold == ev["thresholds"][name], name
        assert _same_score(col.score, ev["scores"][name]), (name, col.score, ev["scores"][name])
        assert col.drifted == ev["drifted"][name], (name, col.score)
    assert result.count == ev["count"]
    assert result.share == pytest.approx(ev["share"], abs=1e-12)
    assert result.drifted == ev["dataset_drifted"]


CASES = {
    # name: (reference rows, current rows, shift, key only in current)
    "small-same": (400, 300, 0.0, False),
    "small-shift-new-key": (500, 700, 0.3, True),
    "large-same": (1500, 1200, 0.0, False),
    "large-shift-new-key": (1800, 2500, 0.25, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_branch_matches_evidently(case: str) -> None:
    n_ref, n_cur, shift, new_key = CASES[case]
    rng = np.random.default_rng(sum(map(ord, case)))
    reference = _frame(rng, n_ref, shift=0.0, new_key=False)
    current = _frame(rng, n_cur, shift=shift, new_key=new_key)

    result = detect_drift(reference, current, numerical=NUMERICAL, categorical=CATEGORICAL)
    _assert_same(result, _evidently(reference, current, NUMERICAL, CATEGORICAL))

    methods = {name: col.method for name, col in result.columns.items()}
    if n_ref <= 1000:
        assert methods["cont"] == "ks"
        assert methods["few"] == methods["cat"] == "chisquare"
        assert methods["binary"] == methods["constant"] == methods["cat_binary"] == "z"
        assert result.columns["constant"].score == 1.0
    else:
        assert methods["cont"] == methods["int_wide"] == "wasserstein"
        assert {methods[c] for c in ("few", "binary", "constant", "cat", "cat_binary")} == {
            "jensenshannon"
        }
        assert result.columns["constant"].score == 0.0
    if shift:
        assert methods["ref_few"] == ("ks" if n_ref <= 1000 else "wasserstein")
    if new_key and n_ref <= 1000:
        # a category seen only in current: expected count 0, chi-square p = 0 (Evidently's too)
        assert result.columns["cat"].score == 0.0 and result.columns["cat"].drifted
    assert result.columns["nan_inf"].n_ref < n_ref  # NaN and ±inf dropped
    assert result.columns["constant"].n_unique == 1


def test_drift_share_and_constant_reference_std_floor() -> None:
    rng = np.random.default_rng(7)
    reference = pd.DataFrame({"x": np.full(1200, 3.0), "y": rng.normal(0, 1, 1200)})
    current = pd.DataFrame({"x": rng.normal(3.0, 0.01, 900), "y": rng.normal(0, 1, 900)})
    result = detect_drift(reference, current, numerical=["x", "y"], drift_share=0.5)
    _assert_same(result, _evidently(reference, current, ["x", "y"], [], drift_share=0.5))
    assert result.columns["x"].method == "wasserstein"  # 1 reference value, >5 together
    assert result.share == 0.5 and result.drifted  # share >= drift_share
    stricter = detect_drift(reference, current, numerical=["x", "y"], drift_share=0.6)
    assert not stricter.drifted


def test_z_test_with_a_value_only_in_current() -> None:
    rng = np.random.default_rng(13)
    reference = pd.DataFrame({"num": np.zeros(300), "cat": ["a"] * 300})
    current = pd.DataFrame(
        {"num": rng.choice([0.0, 1.0], 200, p=[0.97, 0.03]), "cat": rng.choice(["a", "b"], 200)}
    )
    result = detect_drift(reference, current, numerical=["num"], categorical=["cat"])
    _assert_same(result, _evidently(reference, current, ["num"], ["cat"]))
    assert {c.method for c in result.columns.values()} == {"z"}
    assert {c.n_unique for c in result.columns.values()} == {2}


@pytest.mark.parametrize("n_ref", [500, 1500])
def test_pandas_extension_dtypes_match_evidently(n_ref: int) -> None:
    """category (with an unused category "q"), nullable Int64/Float64 with <NA>, string dtype."""
    rng = np.random.default_rng(n_ref)

    def frame(n: int, cats: list[str], low: int, shift: float) -> pd.DataFrame:
        missing = rng.random(n) < 0.1
        return pd.DataFrame(
            {
                "category": pd.Categorical(rng.choice(cats, n), categories=[*"abczq"]),
                "nullable_int": pd.array(
                    np.where(missing, None, rng.integers(low, 50, n)), dtype="Int64"
                ),
                "nullable_float": pd.array(
                    np.where(missing, None, rng.normal(shift, 1, n)), dtype="Float64"
                ),
                "string": pd.array(rng.choice(cats, n), dtype="string"),
            }
        )

    reference = frame(n_ref, ["a", "b", "c"], 0, 0.0)
    current = frame(700, ["a", "b", "z"], 5, 0.2)
    numerical, categorical = ["nullable_int", "nullable_float"], ["category", "string"]
    result = detect_drift(reference, current, numerical=numerical, categorical=categorical)
    _assert_same(result, _evidently(reference, current, numerical, categorical))
    assert result.columns["category"].n_unique == 4  # the unused category does not count


def test_inferred_types_match_evidently() -> None:
    rng = np.random.default_rng(11)

    def frame(n: int, shift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "f": rng.normal(shift, 1, n),
                "small_int": rng.integers(0, 4 + int(shift > 0), n),  # categorical
                "wide_int": rng.integers(0, 50, n),  # numerical
                "s": rng.choice(["u", "v", "w"], n),  # categorical
                "b": rng.random(n) < 0.5 + shift / 3,  # categorical
            }
        )

    reference, current = frame(600, 0.0), frame(500, 0.5)
    result = detect_drift(reference, current)
    assert [c.kind for c in result.columns.values()] == [
        "numerical",
        "numerical",
        "categorical",
        "categorical",
        "categorical",
    ]
    _assert_same(result, _evidently(reference, current, None, None))


def test_text_columns_are_skipped_with_a_reason() -> None:
    reference = pd.DataFrame({"x": [1.0, 2.0, 3.0], "note": ["a b", "c d", "e f"]})
    current = pd.DataFrame({"x": [1.0, 2.5, 3.0], "note": ["g h", "i j", "k l"]})
    assert infer_column_kind(current["note"]) == "text"
    result = detect_drift(reference, current)
    assert list(result.columns) == ["x"]
    assert "text" in result.skipped["note"]
    as_category = detect_drift(reference, current, numerical=["x"], categorical=["note"])
    assert as_category.columns["note"].method == "chisquare"


def test_reference_profile_gives_the_same_result() -> None:
    rng = np.random.default_rng(3)
    reference = _frame(rng, 1500, shift=0.0, new_key=False)
    profile = ReferenceProfile.from_frame(reference, numerical=NUMERICAL, categorical=CATEGORICAL)
    for shift in (0.0, 0.3):
        current = _frame(rng, 800, shift=shift, new_key=bool(shift))
        direct = detect_drift(reference, current, numerical=NUMERICAL, categorical=CATEGORICAL)
        assert detect_drift(profile, current).to_dict() == direct.to_dict()
    subset = detect_drift(profile, current, numerical=["cont"], categorical=[])
    assert list(subset.columns) == ["cont"]
    with pytest.raises(DataError, match="'missing'"):
        detect_drift(profile, current, numerical=["missing"])


def test_all_missing_column_fails_like_evidently_or_is_skipped() -> None:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "gone": [np.nan, np.inf, np.nan, np.nan]})
    current = pd.DataFrame({"x": [1.0, 2.0, 2.0, 5.0], "gone": [1.0, 2.0, 3.0, 4.0]})
    definition = DataDefinition(numerical_columns=["x", "gone"], categorical_columns=[])
    with pytest.raises(ValueError, match="empty column 'gone'"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
    with pytest.raises(DataError, match="'gone'.*reference.*on_empty='skip'"):
        detect_drift(reference, current, numerical=["x", "gone"])
    with pytest.raises(DataError, match="'gone'.*current"):
        detect_drift(current, reference, numerical=["x", "gone"])
    skipped = detect_drift(reference, current, numerical=["x", "gone"], on_empty="skip")
    assert list(skipped.columns) == ["x"] and "reference" in skipped.skipped["gone"]


def test_inf_without_nan_follows_value_drift() -> None:
    """Evidently's own per-column ValueDrift and dataset count disagree on a column with ±inf
    but no NaN; ours follows ValueDrift (always drop ±inf)."""
    rng = np.random.default_rng(5)
    ref_values = rng.normal(0, 1, 1500)
    ref_values[:30] = np.inf
    reference = pd.DataFrame({"v": ref_values, "w": rng.normal(0, 1, 1500)})
    current = pd.DataFrame({"v": rng.normal(0.5, 1, 1500), "w": rng.normal(0.5, 1, 1500)})
    ours = detect_drift(reference, current, numerical=["v", "w"])
    ev = _evidently(reference, current, ["v", "w"], [])
    assert _same_score(ours.columns["v"].score, ev["scores"]["v"])
    assert ours.columns["v"].drifted == ev["drifted"]["v"] is True
    assert ours.count == 2 and ev["count"] == 1  # Evidently's count sees a NaN score for "v"


def test_errors_name_the_column_and_the_fix() -> None:
    reference = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    with pytest.raises(DataError, match=r"\['b'\].*missing in the current.*add them"):
        detect_drift(reference, reference[["a"]], numerical=["a"], categorical=["b"])
    with pytest.raises(DataError, match=r"\['a'\].*missing in the reference"):
        detect_drift(reference[["b"]], reference, numerical=["a"], categorical=["b"])
    with pytest.raises(DataError, match="reference data has no rows"):
        detect_drift(reference.iloc[:0], reference, numerical=["a"])
    with pytest.raises(DataError, match="current data has no rows"):
        detect_drift(reference, reference.iloc[:0], numerical=["a"])
    with pytest.raises(DataError, match="'b'.*numerical.*categorical"):
        detect_drift(reference, reference, numerical=["a", "b"])
    with pytest.raises(DataError, match="both numerical and categorical"):
        detect_drift(reference, reference, numerical=["a"], categorical=["a"])
    with pytest.raises(DataError, match="no column to test"):
        detect_drift(reference, reference, numerical=[], categorical=[])


def test_result_helpers_and_json() -> None:
    rng = np.random.default_rng(9)
    reference = _frame(rng, 300, shift=0.0, new_key=False)
    current = _frame(rng, 300, shift=0.4, new_key=True)
    result = detect_drift(reference, current, numerical=NUMERICAL, categorical=CATEGORICAL)
    doc = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert doc["count"] == len(result.drifted_columns) == result.count
    assert doc["columns"]["cont"]["method"] == "ks"
    assert doc["columns"]["cont"]["method_name"] == "K-S p_value"
    assert set(result.scores) == set(NUMERICAL + CATEGORICAL)
    assert result.drifted_columns == [c for c in result.columns if result.columns[c].drifted]
