"""The model-signal gate on a real endpoint: green and blue compared on the same requests.

Blue is the session's trained taxi model. During a bake the gateway mirrors green's requests
to blue and the gate compares the paired predictions, so a good green passes whatever the
traffic looked like before or during the rollout (short trips before, long trips during;
one row over and over), and a green that shifts its predictions rolls back. The mirrored
copies are invisible: callers get green's or blue's own answer, blue's served metrics and
capture hold exactly the requests blue served.
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.traffic import TrafficGenerator
from mlops.backends.local.gateway import (
    VariantSpec,
    create_endpoint,
    delete_endpoint,
    stop_endpoint,
)
from mlops.backends.local.gateway.client import EndpointClient
from mlops.backends.local.gateway.state import endpoint_metrics_dir
from mlops.capture import read_capture
from mlops.monitoring.endpoint_metrics import read_records
from mlops.policy import AlarmThresholds
from mlops.rollout import RolloutResult
from mlops.settings import Settings
from mlops.stages.deploy import deploy_to_endpoint, reference_rows
from mlops.tracking import Tags, connect

pytestmark = pytest.mark.slow

MODELS = Path(__file__).parent / "models"
NAME = "taxi-signal-gate"
# Judged on errors and the model signal: latency must not depend on this machine's speed.
ALARMS = AlarmThresholds(min_requests=10, max_latency_p99_ms=60_000)
ROUTING = {"traffic_routing": "CANARY", "canary_size": 20, "wait_interval_s": 4}


def _register_code_model(
    settings: Settings, blue: str, code: str, config: dict[str, Any] | None = None
) -> str:
    """Register a models-from-code pyfunc wrapping blue's XGBoost model; its version."""
    import mlflow

    client = connect(settings)
    mv = client.get_model_version("taxi", blue)
    info = mlflow.models.get_model_info(f"models:/taxi/{blue}")
    with (
        mlflow.start_run(experiment_id=client.get_run(mv.run_id).info.experiment_id),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", UserWarning)  # no type hints, no input example
        logged = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODELS / f"{code}_model.py"),
            artifacts={"xgboost": f"models:/taxi/{blue}"},
            model_config=config,
            signature=info.signature,
            pip_requirements=["mlflow", "xgboost"],
        )
    baseline = {Tags.BASELINE_URI: mv.tags[Tags.BASELINE_URI]}
    return str(mlflow.register_model(logged.model_uri, "taxi", tags=baseline).version)


@pytest.fixture(scope="module")
def models(trained_taxi: tuple[Settings, str]) -> dict[str, Any]:
    """Blue and the greens: a twin (blue's own model again), a nudged green 3% above blue,
    the shifted green of the rollout tests (1.6 times blue); short and long trips."""
    import mlflow

    settings, blue = trained_taxi
    client = connect(settings)
    mv = client.get_model_version("taxi", blue)
    twin = mlflow.register_model(
        f"models:/taxi/{blue}", "taxi", tags={Tags.BASELINE_URI: mv.tags[Tags.BASELINE_URI]}
    )
    versions = {
        "blue": blue,
        "twin": str(twin.version),
        "nudged": _register_code_model(settings, blue, "scaled", {"factor": 1.03}),
        "shifted": _register_code_model(settings, blue, "shifted"),
    }
    features = mlflow.models.get_model_info(f"models:/taxi/{blue}").signature.inputs
    distance = features.input_names().index("trip_distance")
    body, _ = reference_rows(settings, "taxi", blue, 300)
    rows = [line + b"\n" for line in body.splitlines()]
    short = [r for r in rows if float(r.split(b",")[distance]) < 1.5]
    long = [r for r in rows if float(r.split(b",")[distance]) > 4.0]
    assert len(short) >= 20 and len(long) >= 20
    return {"settings": settings, "versions": versions, "short": short, "long": long}


@pytest.fixture
def endpoint(models: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A fresh endpoint serving blue alone, capturing every request, code models allowed."""
    settings: Settings = models["settings"]
    blue = f"v{models['versions']['blue']}"
    destination = tmp_path / "capture"
    create_endpoint(
        settings,
        NAME,
        [VariantSpec(name=blue, model_ref=f"models:/taxi/{models['versions']['blue']}")],
        capture=True,
        capture_destination=str(destination),
        sampling=100,
        allow_code=True,
    )
    try:
        yield {**models, "blue": blue, "destination": str(destination)}
    finally:
        delete_endpoint(settings, NAME)


def _client(env: dict[str, Any]) -> EndpointClient:
    return EndpointClient.for_endpoint(env["settings"], NAME)


def _roll_out(env: dict[str, Any], green: str, rows: list[bytes]) -> tuple[RolloutResult, Any]:
    """Roll ``green`` out while ``rows`` are sent at 40 requests/s."""
    settings: Settings = env["settings"]
    policy = settings.rollout.policy(**ROUTING, termination_wait_s=1)
    policy = policy.model_copy(update={"alarms": ALARMS})
    with (
        _client(env) as client,
        TrafficGenerator(client, rows, rate=40) as traffic,
    ):
        result = deploy_to_endpoint(
            settings,
            model_name="taxi",
            version=env["versions"][green],
            endpoint=NAME,
            policy=policy,
        )
    return result, traffic


def _assert_every_request_answered(traffic: TrafficGenerator, *variants: str) -> None:
    """Each request got a 200 carrying blue's or green's name, whatever bucket it is in."""
    assert set(traffic.statuses) <= set(variants), dict(traffic.statuses)
    assert {s for c in traffic.statuses.values() for s in c} == {200}, dict(traffic.statuses)
    assert sum(sum(c.values()) for c in traffic.statuses.values()) == traffic.sent


def _ks_of_the_mixes(env: dict[str, Any]) -> float:
    """The two-sample KS statistic of blue's predictions of short vs long trips: how far
    apart the old, unpaired gate saw blue before the rollout and green during it."""
    from scipy.stats import ks_2samp

    with _client(env) as client:
        short, long = (
            client.invoke(b"".join(env[mix]), accept="text/csv", target_variant=env["blue"])
            for mix in ("short", "long")
        )
    return float(ks_2samp(short.predictions(), long.predictions()).statistic)


def _signal_readings(result: RolloutResult) -> list[tuple[float, float]]:
    """(pairs, differing share) at every alarm reading that judged the signal."""
    return [
        (p["signal_pairs"], p["signal_differing_share"])
        for p in result.timeline
        if "signal_differing_share" in p
    ]


def test_twin_green_passes_after_a_different_traffic_mix(endpoint: dict[str, Any]) -> None:
    with (
        _client(endpoint) as client,
        TrafficGenerator(client, endpoint["short"], rate=100, repeat=False) as before,
    ):
        before.wait(60)  # blue's history: short trips only
    _assert_every_request_answered(before, endpoint["blue"])
    assert _ks_of_the_mixes(endpoint) > 0.35  # what blue's history against green's bake gave

    result, traffic = _roll_out(endpoint, "twin", endpoint["long"])  # the bake: long trips

    green = f"v{endpoint['versions']['twin']}"
    assert result.completed, result.summary()
    _assert_every_request_answered(traffic, endpoint["blue"], green)
    assert traffic.answered(green) > 0 and traffic.answered(endpoint["blue"]) > 0
    readings = _signal_readings(result)
    assert readings and readings[-1][0] >= ALARMS.min_requests, result.timeline
    assert all(share == 0.0 for _, share in readings), readings
    run = connect(endpoint["settings"]).get_run(result.record_run_id)
    assert "signal_differing_share" in run.data.metrics
    assert "signal_pairs" in run.data.metrics


def test_nudged_green_passes_on_constant_row_traffic(endpoint: dict[str, Any]) -> None:
    # one row over and over: any difference at all gave a KS statistic of 1.0
    row = endpoint["long"][0]
    result, traffic = _roll_out(endpoint, "nudged", [row])

    green = f"v{endpoint['versions']['nudged']}"
    assert result.completed, result.summary()
    _assert_every_request_answered(traffic, endpoint["blue"], green)
    readings = _signal_readings(result)
    assert readings and readings[-1][0] >= ALARMS.min_requests, result.timeline
    assert all(share == 0.0 for _, share in readings), readings


def test_shifted_green_rolls_back_on_model_signal(endpoint: dict[str, Any]) -> None:
    rows = endpoint["short"] + endpoint["long"]
    result, traffic = _roll_out(endpoint, "shifted", rows)

    green = f"v{endpoint['versions']['shifted']}"
    assert result.outcome == "rolled_back", result.summary()
    assert result.alarm == "model_signal", result.reason
    assert "paired predictions" in result.reason and "differ by more than 10%" in result.reason
    _assert_every_request_answered(traffic, endpoint["blue"], green)
    with _client(endpoint) as client:
        state = client.state()
        assert [(v.name, v.weight) for v in state.variants] == [(endpoint["blue"], 100.0)]
        assert client.pairing() == {"active": False}  # ended with the rollout
    run = connect(endpoint["settings"]).get_run(result.record_run_id)
    assert run.data.tags["mlops.rollout.alarm"] == "model_signal"
    assert run.data.metrics["signal_differing_share"] > ALARMS.max_signal_shift


def test_mirrored_requests_are_neither_answered_nor_counted_nor_captured(
    endpoint: dict[str, Any],
) -> None:
    settings: Settings = endpoint["settings"]
    blue, green = endpoint["blue"], f"v{endpoint['versions']['twin']}"
    rows = endpoint["short"] + endpoint["long"]
    started = time.time()
    answered: dict[str, str] = {}  # inference id -> the variant that answered it
    statuses: Counter[int] = Counter()
    with _client(endpoint) as client:
        client.add_variant(green, f"models:/taxi/{endpoint['versions']['twin']}", weight=0.0)
        client.set_weights({blue: 50.0, green: 50.0})
        client.start_pairing(green, blue, max_per_s=10_000)
        for i in range(200):
            inference_id = f"req-{i}-{uuid.uuid4().hex[:6]}"
            result = client.invoke(
                rows[i % len(rows)], "text/csv", accept="text/csv", inference_id=inference_id
            )
            statuses[result.status] += 1
            answered[inference_id] = result.variant or "(none)"
        pairing = _settled(client)
        metrics = client.metrics(since=0)["variants"]
        client.stop_pairing()
    by_variant = Counter(answered.values())

    # every caller got its own variant's answer, by weight: the copies went nowhere
    assert statuses == {200: 200}
    assert set(by_variant) == {blue, green} and min(by_variant.values()) > 40, by_variant
    # the copies happened: one per answer of green, each paired row by row, all equal
    counts = pairing["counts"]
    assert counts["offered"] == by_variant[green]
    assert counts["mirrored"] + counts["busy"] == counts["offered"], counts
    assert counts["paired_requests"] == counts["mirrored"] > by_variant[green] // 2, counts
    assert counts["failed"] == counts["timed_out"] == counts["mismatched"] == 0, counts
    assert pairing["pairs_recorded"] == counts["paired_requests"]  # one row per request
    # blue's served metrics count what blue served, not the copies it answered
    assert metrics[blue]["requests"] == by_variant[blue], (metrics[blue], by_variant)
    assert metrics[green]["requests"] == by_variant[green]

    stop_endpoint(settings, NAME)  # flushes capture and the minute records
    for variant in (blue, green):
        captured = [
            r["eventMetadata"].get("inferenceId")
            for r in read_capture(endpoint["destination"], NAME, variant)
        ]
        served = sorted(i for i, v in answered.items() if v == variant)
        assert sorted(captured) == served, variant  # exactly the served requests, once each
        records, _ = read_records(
            endpoint_metrics_dir(settings, NAME),
            start=started - 120,
            end=time.time() + 120,
            variant=variant,
        )
        assert sum(r.invocations for r in records) == by_variant[variant], variant


def _settled(client: EndpointClient, timeout: float = 30.0) -> dict[str, Any]:
    """The pairing's state once no copy is in flight any more."""
    deadline = time.monotonic() + timeout
    while True:
        doc = client.pairing(after=0)
        if doc["inflight"] == 0 or time.monotonic() > deadline:
            assert all(g == b for g, b in doc["pairs"]), doc["pairs"][:5]  # the twin agrees
            return doc
        time.sleep(0.1)
