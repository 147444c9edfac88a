"""Accuracy decay: the live primary metric against the test split's, per metric direction."""

from __future__ import annotations

import json
import math

import pytest

from mlops.evaluation.decay import AccuracyCheck, check_decay
from mlops.types import Task

MAX_DROP = 0.10


@pytest.mark.parametrize(
    ("live_rmse", "dropped"),
    [
        (10.99, False),  # 9.9% worse: allowed
        (11.01, True),  # 10.1% worse: dropped
        (8.0, False),  # better (lower) than test
    ],
)
def test_rmse_lower_is_better(live_rmse: float, dropped: bool) -> None:
    check = check_decay(Task.REGRESSION, {"rmse": live_rmse, "r2": 0.9}, {"rmse": 10.0}, MAX_DROP)
    assert check.metric == "rmse"
    assert (check.live, check.test, check.max_drop) == (live_rmse, 10.0, MAX_DROP)
    assert check.relative_drop == pytest.approx((live_rmse - 10.0) / 10.0)
    assert check.dropped is dropped


@pytest.mark.parametrize(("task", "metric"), [(Task.BINARY, "auc"), (Task.MULTICLASS, "accuracy")])
@pytest.mark.parametrize(
    ("live", "dropped"),
    [
        (0.7201, False),  # 9.99% below 0.8: allowed
        (0.7199, True),  # 10.01% below: dropped
        (0.95, False),  # better (higher) than test
    ],
)
def test_auc_and_accuracy_higher_is_better(
    task: Task, metric: str, live: float, dropped: bool
) -> None:
    # the other metrics of the task are present and ignored: only the primary one decides
    check = check_decay(task, {metric: live, "logloss": 9.0}, {metric: 0.8, "f1": 0.1}, MAX_DROP)
    assert check.metric == metric
    assert check.relative_drop == pytest.approx((0.8 - live) / 0.8)
    assert check.dropped is dropped


def test_task_given_as_text() -> None:
    assert check_decay("binary", {"auc": 0.5}, {"auc": 0.8}, MAX_DROP).dropped


def test_exactly_max_drop_is_allowed() -> None:
    check = check_decay(Task.MULTICLASS, {"accuracy": 0.75}, {"accuracy": 1.0}, 0.25)
    assert check.relative_drop == 0.25 and not check.dropped


@pytest.mark.parametrize(
    ("live", "test", "direction"),
    [
        ({"rmse": 12.0}, {"rmse": 10.0}, "worse"),
        ({"rmse": 8.0}, {"rmse": 10.0}, "better"),
    ],
)
def test_relative_drop_sign_rmse(live: dict, test: dict, direction: str) -> None:
    drop = check_decay(Task.REGRESSION, live, test, MAX_DROP).relative_drop
    assert drop is not None
    assert (drop > 0) if direction == "worse" else (drop < 0)


def test_relative_drop_sign_auc() -> None:
    worse = check_decay(Task.BINARY, {"auc": 0.6}, {"auc": 0.8}, MAX_DROP).relative_drop
    better = check_decay(Task.BINARY, {"auc": 0.9}, {"auc": 0.8}, MAX_DROP).relative_drop
    assert worse == pytest.approx(0.25) and better == pytest.approx(-0.125)


@pytest.mark.parametrize(
    ("live", "test"),
    [
        ({"auc": 0.2}, {}),  # the version's run has no test metric
        ({"auc": 0.2}, {"accuracy": 0.9}),  # ... only another one
        ({}, {"auc": 0.8}),  # the live window lacks the metric
        ({"auc": math.nan}, {"auc": 0.8}),  # AUC on one class only
        ({"auc": math.inf}, {"auc": 0.8}),
        ({"auc": 0.2}, {"auc": math.nan}),
    ],
)
def test_missing_or_non_finite_decides_nothing(live: dict, test: dict) -> None:
    check = check_decay(Task.BINARY, live, test, MAX_DROP)
    assert check.metric == "auc"
    assert check.relative_drop is None
    assert check.dropped is False


def test_a_missing_test_metric_is_recorded_as_none() -> None:
    check = check_decay(Task.REGRESSION, {"rmse": 3.0}, {}, MAX_DROP)
    assert (check.live, check.test) == (3.0, None)
    missing_live = check_decay(Task.REGRESSION, {}, {"rmse": 3.0}, MAX_DROP)
    assert math.isnan(missing_live.live) and missing_live.test == 3.0


def test_a_zero_test_metric() -> None:
    # rmse 0 on test: any live error is an unbounded relative drop, none is no drop
    worse = check_decay(Task.REGRESSION, {"rmse": 0.5}, {"rmse": 0.0}, MAX_DROP)
    assert worse.relative_drop == math.inf and worse.dropped
    same = check_decay(Task.REGRESSION, {"rmse": 0.0}, {"rmse": 0.0}, MAX_DROP)
    assert same.relative_drop == 0.0 and not same.dropped


def test_to_dict_is_plain_json() -> None:
    check = check_decay(Task.BINARY, {"auc": 0.6}, {"auc": 0.8}, MAX_DROP)
    assert isinstance(check, AccuracyCheck)
    data = json.loads(json.dumps(check.to_dict()))
    assert data == {
        "metric": "auc",
        "live": 0.6,
        "test": 0.8,
        "relative_drop": pytest.approx(0.25),
        "max_drop": MAX_DROP,
        "dropped": True,
    }
