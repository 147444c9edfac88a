"""Routing stays exact under concurrent load.

One endpoint: production variants v1 and v2 at weights 70/30 and a shadow variant s, capture
on at 100%, one worker per model server. N requests from 32 threads at once, each with an
inference id of its own, every tenth naming v2 as its target. Then every request got a 2xx,
the targeted ones from v2; the others split about 70/30; the admin API's metrics count each
variant's requests exactly as the answers' headers do, and the shadow's copies plus those it
dropped make N; after the endpoint stopped (which flushes), the per-minute files count the
same, and each variant's capture holds exactly the inference ids it answered.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mlops.backends.local.gateway import (
    EndpointClient,
    VariantSpec,
    create_endpoint,
    delete_endpoint,
    stop_endpoint,
)
from mlops.backends.local.gateway.state import endpoint_metrics_dir
from mlops.capture import read_capture
from mlops.monitoring.endpoint_metrics import read_records
from mlops.settings import Settings
from tests.conftest import make_settings

pytestmark = pytest.mark.slow

NAME = "taxi-load"
N = 1500
THREADS = 32
ROW = b"10.65,1,2.56\n"


@pytest.fixture(scope="module")
def settings(
    trained_taxi: tuple[Settings, str], tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    store, _ = trained_taxi
    return make_settings(
        tmp_path_factory.mktemp("routing-load"),
        tracking_uri=store.effective_tracking_uri,
        serving={"workers": 1},
    )


@pytest.fixture(scope="module")
def capture(settings: Settings) -> Path:
    return settings.work_dir / "load-capture"


@pytest.fixture(scope="module")
def endpoint(settings: Settings, capture: Path, taxi_ref: str) -> Iterator[str]:
    variants = [
        VariantSpec("v1", taxi_ref, initial_weight=70),
        VariantSpec("v2", taxi_ref, initial_weight=30),
        VariantSpec("s", taxi_ref, initial_weight=0, shadow=True),
    ]
    create_endpoint(
        settings, NAME, variants, capture=True, capture_destination=str(capture), sampling=100
    )
    try:
        yield NAME
    finally:
        delete_endpoint(settings, NAME)


def _send_all(port: int) -> dict[str, tuple[int, str | None, bool]]:
    """Send the N requests from THREADS threads; inference id -> (status, variant, targeted)."""
    local = threading.local()

    def one(i: int) -> tuple[str, tuple[int, str | None, bool]]:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        inference_id = f"load-{i}"
        targeted = i % 10 == 0
        headers = {"Content-Type": "text/csv", "X-Amzn-SageMaker-Inference-Id": inference_id}
        if targeted:
            headers["X-Amzn-SageMaker-Target-Variant"] = "v2"
        local.conn.request("POST", "/invocations", ROW, headers)
        resp = local.conn.getresponse()
        body = resp.read()
        assert 5 < float(body) < 40, body[:200]
        return inference_id, (
            resp.status,
            resp.getheader("X-Amzn-Invoked-Production-Variant"),
            targeted,
        )

    with ThreadPoolExecutor(THREADS) as pool:
        return dict(pool.map(one, range(N)))


def _wait_for_shadow(client: EndpointClient, since: float) -> dict[str, dict]:
    deadline = time.monotonic() + 60
    while True:
        variants = client.metrics(since)["variants"]
        shadow = variants["s"]
        if shadow["requests"] + shadow["shadow_dropped"] >= N or time.monotonic() > deadline:
            return variants
        time.sleep(0.2)


def test_weights_targets_shadow_metrics_and_capture_are_exact_under_load(
    settings: Settings, capture: Path, endpoint: str
) -> None:
    since = time.time()
    with EndpointClient.for_endpoint(settings, endpoint) as client:
        port = int(client.base_url.rsplit(":", 1)[1])
        answers = _send_all(port)
        metrics = _wait_for_shadow(client, since)

    # every request answered 2xx by a production variant; the targeted ones by v2
    assert len(answers) == N
    assert Counter(status for status, _, _ in answers.values()) == Counter({200: N})
    by_variant: dict[str, set[str]] = {"v1": set(), "v2": set()}
    for inference_id, (_, variant, targeted) in answers.items():
        assert variant in by_variant, (inference_id, variant)
        assert variant == "v2" or not targeted, inference_id
        by_variant[variant].add(inference_id)
    untargeted = [v for _, v, targeted in answers.values() if not targeted]
    share = untargeted.count("v1") / len(untargeted)
    assert 0.64 < share < 0.76, f"v1 took {share:.1%} of the weighted traffic, not about 70%"

    # the admin API: each variant's requests exactly; the shadow's copies and drops make N
    for name, ids in by_variant.items():
        assert metrics[name]["requests"] == len(ids), (name, metrics[name])
        assert metrics[name]["status_2xx"] == len(ids), (name, metrics[name])
        assert len(metrics[name]["predictions"]) == len(ids)
    shadow = metrics["s"]
    assert shadow["requests"] + shadow["shadow_dropped"] == N, shadow
    assert shadow["status_2xx"] == shadow["requests"] > 0, shadow

    # stopped (flushes metrics and capture): the minute files and the capture agree
    stop_endpoint(settings, endpoint)
    records, skipped = read_records(
        endpoint_metrics_dir(settings, endpoint), start=since - 3600, end=time.time() + 3600
    )
    assert skipped == 0
    invocations: Counter[str] = Counter()
    for record in records:
        invocations[record.variant] += record.invocations
        assert record.errors_4xx == record.errors_5xx == 0, record
    assert invocations == Counter(
        {"v1": len(by_variant["v1"]), "v2": len(by_variant["v2"]), "s": shadow["requests"]}
    )
    for name, ids in by_variant.items():
        captured = [
            r["eventMetadata"]["inferenceId"] for r in read_capture(str(capture), NAME, name)
        ]
        assert len(captured) == len(ids), name
        assert set(captured) == ids, name
    shadow_ids = [r["eventMetadata"]["inferenceId"] for r in read_capture(str(capture), NAME, "s")]
    assert len(shadow_ids) == len(set(shadow_ids)) == shadow["requests"]
    assert set(shadow_ids) <= set(answers)
