"""The rollout record's name and picture: what a person reads on the record run."""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from matplotlib.colors import to_hex

from mlops.rollout import BlueGreenPolicy, RolloutResult, RolloutStep
from mlops.rollout.record import plot_rollout, rollout_figure, rollout_title


@pytest.fixture
def result() -> RolloutResult:
    started = time.time() - 20
    policy = BlueGreenPolicy.model_validate(
        {
            "routing": {"type": "CANARY", "canary_size": 20},
            "alarms": {"max_5xx_rate": 0.02, "max_4xx_rate": 0.1, "max_latency_p99_ms": 300},
        }
    )
    timeline = [
        {"t": float(t), "green_5xx_rate": 0.0, "green_4xx_rate": 0.05 * (t > 10),
         "signal_differing_share": 0.01, "green_latency_p99_ms": 40.0 + t}
        for t in range(0, 20, 2)
    ]  # fmt: skip
    return RolloutResult(
        endpoint="taxi-prod",
        model_name="taxi",
        blue_variant="v1",
        blue_version="1",
        green_variant="v2",
        green_version="2",
        policy=policy,
        outcome="rolled_back",
        reason="4xx rate 0.15 > 0.1",
        alarm="4xx_rate",
        steps=[
            RolloutStep(name="create green v2", started_at=started, ended_at=started + 1),
            RolloutStep(name="shift 20%", started_at=started + 1, green_share=20.0),
            RolloutStep(name="roll back: all traffic to v1", started_at=started + 18),
        ],
        timeline=timeline,
        started_at=started,
        ended_at=started + 19,
    )


def test_titles_name_the_endpoint_and_the_versions() -> None:
    assert rollout_title("taxi-prod", "v1", "1", "v2", "2") == "taxi-prod: v1 → v2"
    assert rollout_title("taxi-prod", None, None, "v1", "1") == "taxi-prod: new → v1"
    assert rollout_title("e", "blue-x", None, "v3", "3") == "e: blue-x → v3"


def test_thresholds_are_labelled_and_4xx_5xx_stay_apart(result: RolloutResult) -> None:
    fig = rollout_figure(result)
    try:
        _, rates, latency = fig.axes
        lines = {line.get_label(): line for line in rates.get_lines()}
        labels = set(rates.get_legend_handles_labels()[1])
        assert {"5xx rate", "4xx rate", "5xx rate alarm (0.02)", "4xx rate alarm (0.1)"} <= labels
        assert "paired predictions differing alarm (0.2)" in labels
        five, four = lines["5xx rate"], lines["4xx rate"]
        assert to_hex(five.get_color()) != to_hex(four.get_color())
        assert five.get_linestyle() != four.get_linestyle()
        # a threshold line has its curve's colour and sits at the policy's value
        assert to_hex(lines["4xx rate alarm (0.1)"].get_color()) == to_hex(four.get_color())
        assert list(lines["4xx rate alarm (0.1)"].get_ydata()) == [0.1, 0.1]
        assert "latency alarm (300 ms)" in latency.get_legend_handles_labels()[1]
    finally:
        plt.close(fig)


def test_plot_is_written_as_png(result: RolloutResult, tmp_path: Path) -> None:
    path = plot_rollout(result, tmp_path / "rollout.png")
    assert path.read_bytes().startswith(b"\x89PNG")
