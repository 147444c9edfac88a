"""The local endpoint backend through the Protocol only, against a real gateway on loopback:
create → invoke → add a variant → set weights → metrics → pairing → remove → delete."""

from __future__ import annotations

import math
import time

import pytest

from mlops.backends import (
    EndpointBackend,
    EndpointProcesses,
    RequestPairing,
    VariantSpec,
    get_endpoint_backend,
)
from mlops.errors import EndpointNotFoundError
from mlops.settings import Settings

pytestmark = pytest.mark.slow

NAME = "taxi-protocol"


def test_a_round_trip_through_the_protocol(
    ep_settings: Settings, taxi_ref: str, second_ref: str, csv_rows: list[bytes]
) -> None:
    backend = get_endpoint_backend(ep_settings)
    assert isinstance(backend, EndpointBackend)
    assert isinstance(backend, RequestPairing) and isinstance(backend, EndpointProcesses)
    started = time.time()
    try:
        created = backend.create_endpoint(NAME, [VariantSpec("blue", taxi_ref)])
        assert created.status == "InService"
        assert [(v.name, v.weight, v.model_ref) for v in created.variants] == [
            ("blue", 1.0, taxi_ref)
        ]
        assert created.metrics_dir is not None and NAME in created.metrics_dir
        assert NAME in [e.name for e in backend.list_endpoints()]

        answer = backend.invoke(NAME, csv_rows[0], accept="text/csv")
        assert answer.ok and answer.variant == "blue", answer.text
        (value,) = answer.predictions()
        assert math.isfinite(value)

        green = backend.add_variant(NAME, VariantSpec("green", second_ref, initial_weight=0.0))
        assert (green.name, green.weight, green.status) == ("green", 0.0, "InService")
        # weight 0: only a request naming green reaches it
        targeted = backend.invoke(NAME, csv_rows[0], target_variant="green")
        assert targeted.ok and targeted.variant == "green"
        assert targeted.predictions() == [value]  # the same model under another name

        pairing = backend.start_pairing(NAME, "green", "blue", max_per_s=100)
        weights = backend.set_weights(NAME, {"blue": 0.0, "green": 100.0})
        assert weights == {"blue": 0.0, "green": 100.0}
        described = backend.describe_endpoint(NAME)
        assert [(v.name, v.weight) for v in described.variants] == [
            ("blue", 0.0),
            ("green", 100.0),
        ]
        assert [v.name for v in described.serving] == ["green"]
        for row in csv_rows[:5]:
            assert backend.invoke(NAME, row).variant == "green"

        metrics = backend.variant_metrics(NAME, since=started)
        assert metrics["green"].requests == 6  # the targeted one and five by weight
        assert metrics["green"].status_2xx == 6 and metrics["green"].latency_p99_ms
        assert metrics["blue"].requests == 1  # the mirrored copies are not counted
        deadline = time.monotonic() + 10
        batch = backend.read_pairing(NAME, after=pairing.next)
        pairs = list(batch.pairs)
        while len(pairs) < 5 and time.monotonic() < deadline:  # copies are fire-and-forget
            time.sleep(0.2)
            batch = backend.read_pairing(NAME, after=batch.next)
            pairs += batch.pairs
        assert batch.id == pairing.id and batch.active
        assert len(pairs) == 5 and all(g == b for g, b in pairs), pairs
        backend.stop_pairing(NAME)
        assert not backend.read_pairing(NAME, after=0).active

        backend.remove_variant(NAME, "blue")
        assert [v.name for v in backend.describe_endpoint(NAME).variants] == ["green"]
    finally:
        backend.delete_endpoint(NAME)
        backend.close()
    with pytest.raises(EndpointNotFoundError):
        backend.describe_endpoint(NAME)
