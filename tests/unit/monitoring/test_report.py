"""build_report: Evidently's drift + summary presets on a seeded sample, titled as such."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.errors import ConfigError, DataError
from mlops.monitoring.drift import detect_drift
from mlops.monitoring.report import EvidentlyReport, build_report, report_title

pytest.importorskip("evidently")


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)

    def frame(n: int, shift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "distance": rng.gamma(2.0 + shift, 1.0, n),
                "passengers": rng.integers(1, 5, n),
                "zone": rng.choice(["a", "b", "c"], n),
                "prediction": rng.normal(10 + shift, 2, n),
                "ignored": rng.normal(0, 1, n),
            }
        )

    return frame(3000, 0.0), frame(2500, 1.0)


NUM = ["distance", "prediction"]
CAT = ["passengers", "zone"]


def _report_metrics(report: EvidentlyReport) -> dict[str, object]:
    return {
        m["config"]["column"]: m["value"]
        for m in report.to_dict()["metrics"]
        if m["config"]["type"].endswith(":ValueDrift")
    }


def test_sampled_report_says_so_and_shows_full_data_decisions(
    frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    reference, current = frames
    drift = detect_drift(reference, current, numerical=NUM, categorical=CAT)
    report = build_report(
        reference,
        current,
        numerical=NUM,
        categorical=CAT,
        sample_rows=500,
        title_context="taxi v3",
        drift=drift,
    )
    assert report.sampled
    assert report.title == (
        "Drift report — taxi v3 — sample of 500 of 2,500 current rows and 500 of 3,000 "
        "reference rows; decisions use every row"
    )
    assert report.snapshot.get_name() == report.title
    html = report.save_html(tmp_path / "out" / "drift.html").read_text(encoding="utf-8")
    # the header widget at the top of the report (the page embeds widgets as JSON)
    assert json.dumps(report.title)[1:-1] in html
    assert "Decisions on every row: dataset drift detected" in html

    doc = json.loads(report.save_json(tmp_path / "drift.json").read_text(encoding="utf-8"))
    assert doc["title"] == report.title
    assert doc["rows"] == {
        "reference": 3000,
        "current": 2500,
        "reference_sample": 500,
        "current_sample": 500,
    }
    assert set(_report_metrics(report)) == set(NUM + CAT)  # "ignored" is not in the report
    summary_types = {m["config"]["type"].split(":")[-1] for m in doc["metrics"]}
    assert {"DriftedColumnsCount", "ValueDrift", "RowCount", "MeanValue"} <= summary_types
    row_counts = [m["value"] for m in doc["metrics"] if m["config"]["type"].endswith(":RowCount")]
    assert row_counts == [500]

    loaded = EvidentlyReport.load(report.save_json(tmp_path / "full.json", full=True))
    assert loaded.title == report.title
    assert (loaded.current_rows, loaded.current_sample) == (2500, 500)
    assert _report_metrics(loaded) == _report_metrics(report)


def test_sample_is_seeded_and_unsampled_report_has_no_note(
    frames: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    reference, current = frames
    small = dict(numerical=["distance"], categorical=["zone"], sample_rows=300)
    first = build_report(reference, current, seed=1, **small)
    again = build_report(reference, current, seed=1, **small)
    other = build_report(reference, current, seed=2, **small)
    assert _report_metrics(first) == _report_metrics(again)
    assert _report_metrics(first) != _report_metrics(other)

    whole = build_report(
        reference.head(800), current.head(700), numerical=["distance"], categorical=[],
        sample_rows=1000,
    )  # fmt: skip
    assert not whole.sampled
    assert whole.title == "Drift report"
    # not sampled: Evidently's own scores equal ours
    ours = detect_drift(reference.head(800), current.head(700), numerical=["distance"])
    assert _report_metrics(whole)["distance"] == pytest.approx(ours.scores["distance"], rel=1e-9)


def test_a_csv_window_with_float_categories_is_reported_as_training_labelled_them(
    frames: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """A window read from CSV holds 2.0 where training had the integer 2 (and Evidently
    takes no float labels): the same categories, the same score as with integers."""
    reference, current = (f.head(400) for f in frames)
    parsed = current.assign(passengers=current["passengers"].astype(float))
    odd = parsed.assign(passengers=parsed["passengers"].where(parsed.index % 50 > 0, 2.5))
    small = dict(numerical=[], categorical=["passengers"], sample_rows=1000)
    as_trained = _report_metrics(build_report(reference, current, **small))
    from_csv = _report_metrics(build_report(reference, parsed, **small))
    assert from_csv["passengers"] == pytest.approx(as_trained["passengers"])
    assert "passengers" in _report_metrics(build_report(reference, odd, **small))


def test_title_without_decisions_makes_no_claim() -> None:
    title = report_title(
        reference_rows=50_000, current_rows=1_000_000, reference_sample=50_000,
        current_sample=10_000,
    )  # fmt: skip
    assert title == "Drift report — sample of 10,000 of 1,000,000 current rows"


def test_bad_input(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = frames
    with pytest.raises(DataError, match=r"\['nope'\].*missing in the reference"):
        build_report(reference, current, numerical=["nope"], categorical=[], sample_rows=10)
    with pytest.raises(DataError, match="sample_rows"):
        build_report(reference, current, numerical=NUM, categorical=[], sample_rows=0)


def test_missing_evidently_is_a_config_error(
    frames: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_evidently(name: str, *args: object, **kwargs: object) -> object:
        if name == "evidently" or name.startswith("evidently."):
            raise ImportError("No module named 'evidently'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_evidently)
    reference, current = frames
    with pytest.raises(ConfigError, match=r"pip install 'mlops\[monitoring\]'"):
        build_report(reference, current, numerical=NUM, categorical=CAT, sample_rows=10)
