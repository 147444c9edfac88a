"""The model-signal gate's paired statistic alone: green's and blue's answers to the same rows."""

from __future__ import annotations

import random

import pytest

from mlops.policy import AlarmThresholds
from mlops.rollout import VariantWindow, paired_signal
from mlops.rollout.alarms import evaluate_alarms, signal_p_value

THRESHOLDS = AlarmThresholds(min_requests=20, max_signal_shift=0.2, signal_tolerance=0.1)


def _healthy(n: int) -> VariantWindow:
    return VariantWindow(requests=n, status_2xx=n, latency_p50_ms=2.0, latency_p99_ms=5.0)


def test_identical_answers_never_differ() -> None:
    signal = paired_signal([(12.5, 12.5)] * 30, 0.1)
    assert (signal.pairs, signal.differing, signal.share, signal.labels) == (30, 0, 0.0, False)
    assert signal.median_relative_diff == 0.0


def test_constant_row_with_a_small_difference_passes() -> None:
    # the case: one row sent over and over, green 0.07 above blue (KS said 1.0)
    signal = paired_signal([(12.07, 12.0)] * 200, 0.1)
    assert signal.differing == 0
    assert signal.median_relative_diff == pytest.approx(0.07 / 12.0)


def test_the_traffic_mix_does_not_matter() -> None:
    rng = random.Random(3)
    short = [rng.uniform(4, 9) for _ in range(100)]  # short trips
    long = [rng.uniform(30, 70) for _ in range(100)]  # long trips
    for blue in (short, long, short + long):
        pairs = [(b * rng.uniform(0.95, 1.05), b) for b in blue]
        assert paired_signal(pairs, 0.1).differing == 0


def test_a_pair_differs_beyond_the_relative_tolerance() -> None:
    pairs = [(109.5, 100.5), (111.6, 100.5), (89.4, 100.5), (100.5, 100.5)]
    signal = paired_signal(pairs, 0.1)
    assert signal.differing == 2  # +11% and -11%; +9% is within 10%
    assert signal.share == 0.5
    # whole numbers could be class indices: the caller says when they are not
    whole = [(109.0, 100.0), (111.0, 100.0), (89.0, 100.0), (100.0, 100.0)]
    assert paired_signal(whole, 0.1, labels=False).differing == 2
    assert paired_signal(whole, 0.1).differing == 3  # guessed: labels


def test_answers_near_zero_are_judged_against_a_typical_answer() -> None:
    # blue answers 0.01 where green answers 0.05: 400% relative, but 0.04 is nothing next
    # to the typical answer (10): the floor is 10% of the median |blue|
    pairs = [(0.05, 0.01)] + [(10.0, 10.0)] * 9
    assert paired_signal(pairs, 0.1).differing == 0
    pairs = [(2.0, 0.01)] + [(10.0, 10.0)] * 9  # 1.99 is 20% of a typical answer
    assert paired_signal(pairs, 0.1).differing == 1


def test_all_zero_blue_counts_any_change() -> None:
    assert paired_signal([(0.0, 0.0), (0.5, 0.0)], 0.1).differing == 1


def test_a_shifted_green_differs_on_every_pair() -> None:
    rng = random.Random(4)
    pairs = [(b * 1.6, b) for b in (rng.uniform(5, 70) for _ in range(50))]
    signal = paired_signal(pairs, 0.1)
    assert signal.share == 1.0
    assert signal.median_relative_diff == pytest.approx(0.6, abs=0.01)


def test_class_indices_are_compared_as_labels() -> None:
    signal = paired_signal([(1, 1), (0, 1), (1.0, 1.0), (0, 0)], 0.1)
    assert signal.labels and signal.differing == 1
    # indices 12 and 13 are different classes, whatever the tolerance says of 12 vs 13
    assert paired_signal([(13, 12), (12, 12)], 0.1).differing == 1
    assert paired_signal([("cat", "dog"), ("cat", "cat"), ("1", 1.0)], 0.1).differing == 1
    assert not paired_signal([(12, 12)], 0.1, labels=False).labels


def test_missing_values() -> None:
    signal = paired_signal([(None, None), (None, 3.5), (3.5, 3.5)], 0.1)
    assert (signal.pairs, signal.differing) == (2, 1)  # no value on both sides: left out
    assert paired_signal([], 0.1).share == 0.0


def test_p_value_of_the_differing_share() -> None:
    assert signal_p_value(0, 40, 0.2) == 1.0
    assert signal_p_value(0, 0, 0.2) == 1.0
    assert signal_p_value(40, 40, 0.2) < 1e-20
    assert signal_p_value(10, 40, 0.2) > 0.01  # 25% of 40 is within noise of 20%


def test_the_gate_needs_min_requests_pairs() -> None:
    shifted = [(b * 1.6, b + 0.5) for b in range(10, 29)]  # 19 pairs, all differ
    report = evaluate_alarms(_healthy(50), _healthy(50), THRESHOLDS, pairs=shifted)
    assert report.fired is None
    assert report.signal_pairs == 19 and report.signal_differing_share is None
    report = evaluate_alarms(_healthy(50), _healthy(50), THRESHOLDS, pairs=[*shifted, (48.0, 30.5)])
    assert report.fired == "model_signal"
    assert report.metrics()["signal_differing_share"] == 1.0
    assert report.metrics()["signal_pairs"] == 20.0


def test_a_few_unlucky_pairs_do_not_fire() -> None:
    pairs = [(15.0, 10.0)] * 10 + [(10.0, 10.0)] * 30  # 25% differ: over 20%, not surely
    report = evaluate_alarms(_healthy(50), _healthy(50), THRESHOLDS, pairs=pairs)
    assert report.signal_differing_share == 0.25
    assert report.fired is None
    pairs = [(15.0, 10.0)] * 100 + [(10.0, 10.0)] * 100  # 50% of 200: no doubt
    report = evaluate_alarms(_healthy(50), _healthy(50), THRESHOLDS, pairs=pairs)
    assert report.fired == "model_signal"


def test_labels_reason_names_labels() -> None:
    pairs = [(1, 0)] * 30
    report = evaluate_alarms(_healthy(50), _healthy(50), THRESHOLDS, pairs=pairs)
    assert report.fired == "model_signal"
    assert "30 of 30 paired predictions (100%) have a different label" in (report.reason or "")
