"""The Evidently drift report (HTML + JSON) of a monitoring run: the picture, not the decision.

:func:`build_report` runs Evidently's ``DataDriftPreset`` and ``DataSummaryPreset`` on at most
``sample_rows`` rows of each table (a seeded uniform sample, rows kept in their order), so the
report stays quick on large windows; the decisions come from
:func:`mlops.monitoring.drift.detect_drift` on every row. When sampled, the report's name and
a header at the top of the HTML say so, and when the full-data decisions are passed
(``drift=``) a table of them is shown under the header.

Evidently is an optional extra (``pip install 'mlops[monitoring]'``); it is imported only here,
inside the functions.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.errors import ConfigError, DataError
from mlops.monitoring.drift import DEFAULT_DRIFT_SHARE, DriftResult

__all__ = ["EvidentlyReport", "build_report", "report_title"]

INSTALL_HINT = "pip install 'mlops[monitoring]'"


@contextmanager
def _quiet() -> Iterator[None]:
    """Evidently and the libraries under it warn a lot (numpy on NaN, pandas futures,
    pydantic deprecations); none of it is actionable for the caller."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            yield


def _evidently() -> Any:
    try:
        with _quiet():
            import evidently
    except ImportError as exc:
        raise ConfigError(
            "the Evidently report and workspace need the optional package 'evidently'; "
            f"install it with: {INSTALL_HINT}"
        ) from exc
    return evidently


@functools.cache
def _header_container() -> type:
    """An Evidently ``MetricContainer`` that computes nothing and renders the report's header
    (and the full-data decisions) as the first widgets of the report."""
    _evidently()
    with _quiet():
        from evidently.core.container import MetricContainer
        from evidently.legacy.renderers.html_widgets import header_text, table_data

    class MlopsReportHeader(MetricContainer):
        class Config:
            type_alias = "mlops:metric_container:MlopsReportHeader"

        title: str
        summary: str = ""
        columns: list[str] = []
        rows: list[list[str]] = []

        def __init__(
            self,
            title: str,
            summary: str = "",
            columns: list[str] | None = None,
            rows: list[list[str]] | None = None,
        ) -> None:
            self.title = title
            self.summary = summary
            self.columns = list(columns or [])
            self.rows = [list(r) for r in rows or []]
            super().__init__(include_tests=False)

        def generate_metrics(self, context: Any) -> Sequence[Any]:
            return []

        def render(self, context: Any, child_widgets: Any = None) -> list[Any]:
            widgets = [header_text(label=self.title)]
            if self.rows:
                widgets.append(
                    table_data(
                        title=self.summary,
                        column_names=self.columns,
                        data=self.rows,
                    )
                )
            return widgets

    return MlopsReportHeader


def report_title(
    *,
    reference_rows: int,
    current_rows: int,
    reference_sample: int,
    current_sample: int,
    title_context: str = "",
    decisions_on_every_row: bool = False,
) -> str:
    """The report's name, e.g. ``"Drift report — taxi — sample of 10,000 of 1,000,000
    current rows; decisions use every row"``."""
    parts = ["Drift report"]
    if title_context:
        parts.append(title_context)
    samples = []
    if current_sample < current_rows:
        samples.append(f"{current_sample:,} of {current_rows:,} current rows")
    if reference_sample < reference_rows:
        samples.append(f"{reference_sample:,} of {reference_rows:,} reference rows")
    if samples:
        note = "sample of " + " and ".join(samples)
        if decisions_on_every_row:
            note += "; decisions use every row"
        parts.append(note)
    return " — ".join(parts)


@dataclass
class EvidentlyReport:
    """An Evidently snapshot with the row counts it was built from.

    ``snapshot`` is Evidently's ``Snapshot`` (what :func:`~mlops.monitoring.workspace.
    add_to_workspace` stores). ``save_html``/``save_json`` write the report; ``save_json(...,
    full=True)`` writes the whole snapshot, which :meth:`load` reads back.
    """

    snapshot: Any
    title: str
    reference_rows: int
    current_rows: int
    reference_sample: int
    current_sample: int

    @property
    def sampled(self) -> bool:
        return (
            self.reference_sample < self.reference_rows or self.current_sample < self.current_rows
        )

    def save_html(self, path: str | Path) -> Path:
        """Write the standalone HTML report (its header carries the title)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _quiet():
            self.snapshot.save_html(str(path))
        return path

    def to_dict(self) -> dict[str, Any]:
        """Evidently's result dict (``{"metrics": [...], "tests": [...]}``) plus ``title`` and
        the row counts; JSON-serialisable."""
        with _quiet():
            doc = json.loads(self.snapshot.json())
        doc["title"] = self.title
        doc["rows"] = {
            "reference": self.reference_rows,
            "current": self.current_rows,
            "reference_sample": self.reference_sample,
            "current_sample": self.current_sample,
        }
        return doc

    def save_json(self, path: str | Path, *, full: bool = False) -> Path:
        """Write :meth:`to_dict` (default) or, with ``full=True``, the whole snapshot (widgets
        included) that :meth:`load` and the Evidently UI can read."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if full:
            with _quiet():
                text = self.snapshot.dumps()
        else:
            text = json.dumps(self.to_dict())
        path.write_text(text, encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> EvidentlyReport:
        """Read a snapshot written by ``save_json(path, full=True)``."""
        _evidently()
        with _quiet():
            from evidently.core.report import Snapshot

            snapshot = Snapshot.load(str(path))
        meta = snapshot._metadata or {}

        def count(key: str) -> int:
            return int(meta.get(f"mlops.{key}", 0))

        return cls(
            snapshot=snapshot,
            title=snapshot.get_name() or "",
            reference_rows=count("reference_rows"),
            current_rows=count("current_rows"),
            reference_sample=count("reference_sample"),
            current_sample=count("current_sample"),
        )


def _sample(frame: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    if len(frame) <= n:
        return frame
    positions = np.sort(rng.choice(len(frame), size=n, replace=False))
    return frame.iloc[positions]


def _as_labels(series: pd.Series) -> pd.Series:
    """A categorical column as Evidently takes its labels (int, str, bool; never float).

    A CSV window parses ``1.0`` where training had the integer ``1``: integral floats become
    integers again, any other float its text.
    """
    if not pd.api.types.is_float_dtype(series):
        return series
    values = series.to_numpy()
    present = ~np.isnan(values)
    if present.all() and np.array_equal(values, np.floor(values)):
        return series.astype("int64")
    return series.map(
        lambda v: v if np.isnan(v) else (int(v) if float(v).is_integer() else repr(float(v)))
    )


def _decision_rows(drift: DriftResult) -> tuple[str, list[str], list[list[str]]]:
    verdict = "detected" if drift.drifted else "not detected"
    summary = (
        f"Decisions on every row: dataset drift {verdict} — {drift.count} of "
        f"{drift.n_columns} columns drifted (share {drift.share:.3f}, drift when "
        f">= {drift.drift_share:g})"
    )
    columns = ["column", "type", "method", "score", "threshold", "drifted", "rows ref", "rows cur"]
    rows = [
        [
            str(col.column),
            col.kind,
            col.method_name,
            f"{col.score:.4g}",
            f"{col.threshold:g}",
            "yes" if col.drifted else "no",
            f"{col.n_ref:,}",
            f"{col.n_cur:,}",
        ]
        for col in drift.columns.values()
    ]
    rows += [
        [str(name), "", "skipped", reason, "", "", "", ""] for name, reason in drift.skipped.items()
    ]
    return summary, columns, rows


def build_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numerical: Sequence[str],
    categorical: Sequence[str],
    sample_rows: int,
    seed: int = 0,
    title_context: str = "",
    drift_share: float = DEFAULT_DRIFT_SHARE,
    drift: DriftResult | None = None,
    timestamp: datetime | None = None,
) -> EvidentlyReport:
    """Run Evidently's ``DataDriftPreset(drift_share)`` and ``DataSummaryPreset`` on at most
    ``sample_rows`` rows of each table.

    Args:
        reference, current: the tables; only ``numerical`` + ``categorical`` columns are used.
        numerical, categorical: the column types (passed to Evidently's ``DataDefinition``).
        sample_rows: the most rows of each table Evidently sees (uniform, seeded, in order).
        seed: the sample's seed.
        title_context: words for the title, e.g. the model and window.
        drift_share: the preset's dataset rule (share of drifted columns).
        drift: the full-data decisions of :func:`~mlops.monitoring.drift.detect_drift`; shown
            as a table under the header, and columns it skipped are left out of the report.
        timestamp: the snapshot's time (default: now).

    Raises:
        ConfigError: Evidently is not installed.
        DataError: bad ``sample_rows``, missing columns, or Evidently failed on the data.
    """
    _evidently()
    if sample_rows < 1:
        raise DataError(f"sample_rows must be at least 1, got {sample_rows}")
    num, cat = list(numerical), list(categorical)
    if drift is not None:
        num = [c for c in num if c in drift.columns]
        cat = [c for c in cat if c in drift.columns]
    columns = num + cat
    if not columns:
        raise DataError("no column for the drift report; pass `numerical` and/or `categorical`")
    for side, frame in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(
                f"column(s) {missing} are missing in the {side} data; add them or leave them "
                "out of `numerical`/`categorical`"
            )
    rng = np.random.default_rng(seed)
    ref_sample = _sample(reference[columns], sample_rows, rng)
    cur_sample = _sample(current[columns], sample_rows, rng)
    if cat:
        ref_sample = ref_sample.assign(**{c: _as_labels(ref_sample[c]) for c in cat})
        cur_sample = cur_sample.assign(**{c: _as_labels(cur_sample[c]) for c in cat})
    title = report_title(
        reference_rows=len(reference),
        current_rows=len(current),
        reference_sample=len(ref_sample),
        current_sample=len(cur_sample),
        title_context=title_context,
        decisions_on_every_row=drift is not None,
    )
    header: dict[str, Any] = {"title": title}
    if drift is not None:
        header["summary"], header["columns"], header["rows"] = _decision_rows(drift)
    metadata = {
        "mlops.reference_rows": str(len(reference)),
        "mlops.current_rows": str(len(current)),
        "mlops.reference_sample": str(len(ref_sample)),
        "mlops.current_sample": str(len(cur_sample)),
        "mlops.seed": str(seed),
    }
    with _quiet():
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset, DataSummaryPreset

        definition = DataDefinition(
            numerical_columns=num,
            categorical_columns=cat,
            text_columns=[],
            datetime_columns=[],
        )
        report = Report(
            [
                _header_container()(**header),
                DataDriftPreset(drift_share=drift_share),
                DataSummaryPreset(),
            ],
            include_tests=True,
        )
        try:
            snapshot = report.run(
                Dataset.from_pandas(cur_sample, data_definition=definition),
                Dataset.from_pandas(ref_sample, data_definition=definition),
                timestamp=timestamp,
                metadata=metadata,
                name=title,
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise DataError(
                f"Evidently could not build the drift report ({exc}); check the columns' types "
                "and that no column is empty in the sample"
            ) from exc
    return EvidentlyReport(
        snapshot=snapshot,
        title=title,
        reference_rows=len(reference),
        current_rows=len(current),
        reference_sample=len(ref_sample),
        current_sample=len(cur_sample),
    )
