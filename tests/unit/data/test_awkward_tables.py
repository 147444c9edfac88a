"""Awkward tables get one clear line naming the column and the fix (or a warning)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.data import read_table, validate_table
from mlops.errors import DataError
from mlops.settings import Settings
from mlops.stages import prepare


def _fares(rows: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"distance": rng.uniform(1, 9, rows).round(2), "fare": rng.uniform(5, 40, rows)}
    )


def _one_line_error(frame: pd.DataFrame, target: str = "fare") -> str:
    with pytest.raises(DataError) as info:
        validate_table(frame, target, source="t.parquet")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_parquet_list_column_is_one_line_naming_it(tmp_path: Path) -> None:
    frame = _fares().assign(tags=[[1, 2]] * 40)
    frame.to_parquet(tmp_path / "t.parquet")
    read = read_table(str(tmp_path / "t.parquet"))  # cells come back as numpy arrays
    message = _one_line_error(read)
    assert "column 'tags'" in message
    assert "nested values" in message and "[1, 2] at row 1" in message
    assert "40 rows" in message


def test_nested_target_and_dict_cells_are_refused() -> None:
    frame = _fares()
    frame["fare"] = [[1.0]] * 40
    assert "target 'fare'" in _one_line_error(frame)
    frame = _fares().assign(meta=[{"a": 1}] * 40)
    assert "column 'meta'" in _one_line_error(frame)


def test_duplicate_csv_header_is_refused_with_the_names(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    rows = "\n".join(f"{i},{i * 2},{i + 5},{i}" for i in range(30))
    path.write_text(f"distance,distance,fare,x\n{rows}\n")
    with pytest.raises(DataError) as info:
        read_table(str(path))
    assert "duplicate column names ('distance')" in str(info.value)
    assert "dup.csv" in str(info.value)


def test_duplicate_columns_of_a_frame_are_refused() -> None:
    frame = pd.concat([_fares(), _fares()[["distance"]]], axis=1)
    assert "duplicate column names ('distance')" in _one_line_error(frame)


def test_infinite_values_are_written_plainly() -> None:
    frame = _fares()
    frame.loc[4, "distance"] = np.inf
    frame.loc[7, "distance"] = -np.inf
    message = _one_line_error(frame)
    assert "(inf at row 5, -inf at row 8)" in message
    assert "np.float64" not in message


def test_constant_target_value_is_written_plainly() -> None:
    frame = _fares().assign(fare=3.0)
    message = _one_line_error(frame)
    assert "constant (3.0 in every row)" in message


def test_missing_targets_drop_rows_with_a_warning(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = _fares(60)
    frame.loc[[1, 5, 7], "fare"] = np.nan
    path = tmp_path / "nan.csv"
    frame.to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="mlops"):
        prepared = prepare(settings, data=str(path), target="fare")
    assert sum(prepared.rows.values()) == 57
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "dropped 3 rows of 60" in w and "'fare' is missing" in w and "nan.csv" in w
        for w in warnings
    ), warnings
