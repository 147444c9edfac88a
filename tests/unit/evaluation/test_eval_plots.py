from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlops.evaluation.plots import plot_evaluation, plot_learning_curves
from mlops.types import Task

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 1000


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_regression_plot(tmp_path: Path, rng: np.random.Generator) -> None:
    y = rng.normal(size=200)
    out = plot_evaluation(
        Task.REGRESSION, y, y + rng.normal(scale=0.3, size=200), tmp_path / "sub" / "reg.png"
    )
    assert out == tmp_path / "sub" / "reg.png"
    _assert_png(out)


def test_binary_plot(tmp_path: Path, rng: np.random.Generator) -> None:
    y = rng.integers(0, 2, size=200)
    p = np.clip(y * 0.6 + rng.uniform(0, 0.4, size=200), 0, 1)
    _assert_png(
        plot_evaluation(Task.BINARY, y, p, tmp_path / "bin.png", class_labels=["no", "yes"])
    )


def test_binary_plot_with_single_class(tmp_path: Path) -> None:
    _assert_png(plot_evaluation(Task.BINARY, [1, 1, 1], [0.2, 0.8, 0.9], tmp_path / "one.png"))


def test_multiclass_plot(tmp_path: Path, rng: np.random.Generator) -> None:
    y = rng.integers(0, 3, size=150)
    p = rng.dirichlet(np.ones(3), size=150)
    _assert_png(
        plot_evaluation(
            Task.MULTICLASS,
            y,
            p,
            tmp_path / "mc.png",
            class_labels=["setosa", "versicolor", "virginica"],
        )
    )


def test_wrong_class_label_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="class_labels has 2 names"):
        plot_evaluation(
            Task.MULTICLASS,
            [0, 1],
            [[0.5, 0.3, 0.2]] * 2,
            tmp_path / "x.png",
            class_labels=["a", "b"],
        )


def test_learning_curves(tmp_path: Path) -> None:
    evals = {
        "train": {"rmse": [3.0, 2.0, 1.5, 1.2], "mae": [2.0, 1.5, 1.0, 0.8]},
        "validation": {"rmse": [3.1, 2.2, 1.9, 2.0], "mae": [2.1, 1.6, 1.3, 1.4]},
    }
    _assert_png(plot_learning_curves(evals, tmp_path / "lc.png", best_iteration=2))


def test_learning_curves_empty_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no curve"):
        plot_learning_curves({}, tmp_path / "lc.png")


def test_figures_are_closed(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    plot_learning_curves({"validation": {"logloss": [0.7, 0.5]}}, tmp_path / "a.png")
    plot_evaluation(Task.REGRESSION, [1.0, 2.0, 3.0], [1.1, 2.1, 2.9], tmp_path / "b.png")
    assert len(plt.get_fignums()) == before
