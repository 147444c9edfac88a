"""One local endpoint through its life: real gateway and model-server processes on loopback.

The tests of this module share one endpoint and run in order (create → traffic → crash →
restore → delete), each setting up the weights it needs.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from mlops.backends.local.gateway import (
    EndpointClient,
    EndpointState,
    VariantSpec,
    add_variant,
    create_endpoint,
    delete_endpoint,
    describe_endpoint,
    endpoint_url,
    list_endpoints,
    start_endpoint,
)
from mlops.backends.local.gateway.processes import pid_alive
from mlops.backends.local.gateway.state import state_path
from mlops.errors import EndpointError, EndpointNotFoundError, ModelNotFoundError
from mlops.settings import Settings

pytestmark = pytest.mark.slow

NAME = "taxi-ep"
T = TypeVar("T")


def _pids(state: EndpointState) -> list[int]:
    return [p for p in [state.gateway_pid, *(v.pid for v in state.variants)] if p]


def _wait_for(check: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def endpoint(ep_settings: Settings, taxi_ref: str, second_ref: str) -> Iterator[EndpointState]:
    """``taxi-ep``: production variant v1 (taxi) and a shadow (the second model)."""
    state = create_endpoint(
        ep_settings,
        NAME,
        [
            VariantSpec("v1", taxi_ref),
            VariantSpec("shadow", second_ref, initial_weight=0.0, shadow=True),
        ],
        sampling=100,
    )
    yield state
    try:
        last = describe_endpoint(ep_settings, NAME)
    except EndpointNotFoundError:
        return
    delete_endpoint(ep_settings, NAME)
    for pid in _pids(last):
        _wait_for(lambda pid=pid: not pid_alive(pid), 15, f"pid {pid} to exit")


@pytest.fixture(scope="module")
def client(ep_settings: Settings, endpoint: EndpointState) -> Iterator[EndpointClient]:
    with EndpointClient.for_endpoint(ep_settings, NAME) as c:
        yield c


def test_create_describe_in_service(ep_settings: Settings, endpoint: EndpointState) -> None:
    assert endpoint.status == "InService"
    state = describe_endpoint(ep_settings, NAME)
    assert state.status == "InService"
    assert [(v.name, v.shadow, v.status) for v in state.variants] == [
        ("v1", False, "InService"),
        ("shadow", True, "InService"),
    ]
    v1 = state.variant("v1")
    assert v1.model_name == "taxi" and v1.model_version
    assert (Path(v1.model_dir) / "MLmodel").is_file()  # downloaded: no tracking server needed
    assert all(pid_alive(p) for p in _pids(state))
    saved = json.loads(state_path(ep_settings.endpoints_dir, NAME).read_text())
    assert saved["status"] == "InService" and saved["port"] == state.port
    assert state.capture.enabled and state.capture.sampling_percentage == 100
    assert [s.name for s in list_endpoints(ep_settings)] == [NAME]
    assert endpoint_url(ep_settings, NAME) == f"http://127.0.0.1:{state.port}"


def test_existing_name_is_refused(ep_settings: Settings, taxi_ref: str) -> None:
    with pytest.raises(EndpointError, match="already exists.*delete"):
        create_endpoint(ep_settings, NAME, [VariantSpec("v1", taxi_ref)])


def test_invoke_csv_and_json(client: EndpointClient, csv_rows: list[bytes]) -> None:
    one = client.invoke(csv_rows[0], "text/csv", inference_id="req-1")
    assert one.status == 200, one.text
    assert one.variant == "v1"
    (fare,) = one.predictions()
    assert 1.0 < fare < 500.0  # a taxi fare in dollars
    batch = client.invoke(b"".join(csv_rows), "text/csv", accept="application/json")
    assert batch.status == 200 and batch.content_type.startswith("application/json")
    assert len(json.loads(batch.body)["predictions"]) == len(csv_rows)
    same_path = client._http.post(
        f"/endpoints/{NAME}/invocations", content=csv_rows[0], headers={"Content-Type": "text/csv"}
    )
    assert same_path.status_code == 200
    assert same_path.headers["X-Amzn-Invoked-Production-Variant"] == "v1"
    bad = client.invoke(b"not,a,number\n", "text/csv")
    assert bad.status == 400 and bad.variant == "v1"  # the variant's own error, passed on


def test_add_variant_and_split_traffic(
    client: EndpointClient, second_ref: str, csv_rows: list[bytes]
) -> None:
    added = client.add_variant("v2", second_ref, weight=0.0)
    assert added.status == "InService" and added.model_name == "taxi-endpoints-b"
    weights = client.set_weights({"v1": 50, "v2": 50})
    assert weights == {"v1": 50.0, "shadow": 0.0, "v2": 50.0}
    seen = Counter(client.invoke(csv_rows[i % len(csv_rows)]).variant for i in range(200))
    assert set(seen) == {"v1", "v2"}  # the shadow never answers a caller
    assert 65 <= seen["v1"] <= 135, seen  # binomial(200, 0.5): 7 standard deviations
    client.set_weights({"v1": 100, "v2": 0})
    assert {client.invoke(csv_rows[0]).variant for _ in range(20)} == {"v1"}


def test_target_variant_routes_exactly(client: EndpointClient, csv_rows: list[bytes]) -> None:
    client.set_weights({"v1": 100, "v2": 0})
    answers = [client.invoke(csv_rows[0], target_variant="v2") for _ in range(20)]
    assert {(a.status, a.variant) for a in answers} == {(200, "v2")}
    unknown = client.invoke(csv_rows[0], target_variant="v9")
    assert unknown.status == 400
    assert "v9" in unknown.text and "v1, v2" in unknown.text
    shadow = client.invoke(csv_rows[0], target_variant="shadow")
    assert shadow.status == 400 and "shadow" in shadow.text


def test_metrics_count_requests(client: EndpointClient, csv_rows: list[bytes]) -> None:
    client.set_weights({"v1": 70, "v2": 30})
    since = time.time()
    sent = Counter(client.invoke(csv_rows[i % len(csv_rows)]).variant for i in range(60))
    sent["v2"] += sum(client.invoke(b"bad\n", target_variant="v2").status == 400 for _ in range(3))
    metrics = client.metrics(since=since)
    assert metrics["now"] >= since
    for name in ("v1", "v2"):
        m = metrics["variants"][name]
        assert m["requests"] == sent[name], (name, m, sent)
        assert (
            m["latency_ms"]["p50"] is not None and m["latency_ms"]["max"] >= m["latency_ms"]["p99"]
        )
    v2 = metrics["variants"]["v2"]
    assert v2["status_4xx"] == 3 and v2["status_2xx"] == sent["v2"] - 3 and v2["status_5xx"] == 0
    assert len(metrics["variants"]["v1"]["predictions"]) == sent["v1"]
    assert all(1.0 < p < 500.0 for p in metrics["variants"]["v1"]["predictions"])
    # the shadow got a copy of each of the 63 requests (in the background)
    shadow = _wait_for(
        lambda: (m := client.metrics(since=since)["variants"]["shadow"])["requests"] == 63 and m,
        what="the shadow's copies",
    )
    assert shadow["status_2xx"] == 60 and shadow["status_4xx"] == 3
    later = client.metrics(since=time.time() + 60)["variants"]["v1"]
    assert later["requests"] == 0 and later["latency_ms"]["p50"] is None


def test_capture_layout_and_counts(
    ep_settings: Settings, client: EndpointClient, endpoint: EndpointState
) -> None:
    from mlops.capture import read_capture

    destination = endpoint.capture.destination
    assert destination == ep_settings.capture_destination
    total = client.metrics(since=0)["variants"]

    def counts() -> dict[str, int] | None:
        found = {
            name: sum(1 for _ in read_capture(destination, NAME, name))
            for name in ("v1", "v2", "shadow")
        }
        wanted = {name: total[name]["status_2xx"] for name in found}  # errors: not captured
        return found if found == wanted else None

    _wait_for(counts, what="capture files to hold every request")
    files = sorted(Path(destination, NAME, "v1").rglob("*.jsonl"))
    assert files
    rel = files[0].relative_to(Path(destination, NAME, "v1")).parts
    assert len(rel) == 5 and [len(p) for p in rel[:4]] == [4, 2, 2, 2]  # yyyy/mm/dd/hh/file
    records = list(read_capture(destination, NAME, "v1"))
    assert {r["captureData"]["endpointInput"]["observedContentType"] for r in records} == {
        "text/csv"
    }
    assert [r for r in records if r["eventMetadata"].get("inferenceId") == "req-1"]


def _group_alive(pgid: int | None) -> bool:
    assert pgid is not None
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_crashed_variant_is_restarted(
    ep_settings: Settings, client: EndpointClient, csv_rows: list[bytes]
) -> None:
    before = client.state().variant("v2")
    os.kill(before.pid, signal.SIGKILL)

    def restarted() -> bool:
        v2 = client.state().variant("v2")
        return v2.pid != before.pid and v2.status == "InService"

    _wait_for(restarted, 60, "v2 to be restarted")
    # its workers (one per core) outlived the killed server; the gateway stopped them
    _wait_for(lambda: not _group_alive(before.pid), 30, "the killed server's workers to end")
    answer = client.invoke(csv_rows[0], target_variant="v2")
    assert answer.status == 200 and answer.variant == "v2"
    saved = json.loads(state_path(ep_settings.endpoints_dir, NAME).read_text())
    assert [v["pid"] for v in saved["variants"] if v["name"] == "v2"] == [
        client.state().variant("v2").pid
    ]


def test_killed_gateway_is_restored_by_start(
    ep_settings: Settings, client: EndpointClient, csv_rows: list[bytes]
) -> None:
    client.set_weights({"v1": 60, "v2": 40})
    before = client.state()
    os.kill(before.gateway_pid, signal.SIGKILL)
    _wait_for(lambda: not pid_alive(before.gateway_pid), 10, "the gateway to die")
    down = describe_endpoint(ep_settings, NAME)
    assert down.status == "OutOfService"
    assert client.ping() is False

    after = start_endpoint(ep_settings, NAME)
    assert after.status == "InService" and after.port == before.port
    assert after.gateway_pid != before.gateway_pid
    assert [(v.name, v.weight, v.shadow, v.port, v.pid) for v in after.variants] == [
        (v.name, v.weight, v.shadow, v.port, v.pid) for v in before.variants
    ]  # variants that kept running are adopted, not restarted
    assert client.invoke(csv_rows[0], target_variant="v2").status == 200
    assert {client.invoke(csv_rows[0]).variant for _ in range(30)} == {"v1", "v2"}


def test_admin_errors(
    ep_settings: Settings, client: EndpointClient, taxi_ref: str, tmp_path: Path
) -> None:
    with pytest.raises(EndpointError, match="unknown variant.*'nope'"):
        client.set_weights({"nope": 1})
    with pytest.raises(EndpointError, match="finite numbers >= 0"):
        client.set_weights({"v1": -1})
    with pytest.raises(EndpointError, match="no variant 'nope'"):
        client.remove_variant("nope")
    with pytest.raises(EndpointError, match="already exists"):
        client.add_variant("v1", taxi_ref)
    with pytest.raises(EndpointError, match="not valid"):
        client.add_variant("bad_name", taxi_ref)
    with pytest.raises(EndpointError, match="one shadow at most"):
        client.add_variant("shadow2", taxi_ref, shadow=True)
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        client.add_variant("v3", "models:/no-such-model/1")
    (tmp_path / "MLmodel").write_text("flavors: {}\n")  # a folder that is no usable model
    with pytest.raises(EndpointError, match="403.*not a folder the owner.*chose"):
        client.add_variant("v3", model_dir=str(tmp_path))  # never loads a folder sent over HTTP
    with pytest.raises(EndpointError, match="failed to start"):
        add_variant(ep_settings, NAME, "v3", model_dir=tmp_path)  # the owner chose it
    assert [v.name for v in client.state().variants] == ["v1", "shadow", "v2"]


def test_remove_variant_stops_it(client: EndpointClient, csv_rows: list[bytes]) -> None:
    v2 = client.state().variant("v2")
    client.remove_variant("v2")
    assert not pid_alive(v2.pid)
    state = client.state()
    assert [v.name for v in state.variants] == ["v1", "shadow"]
    assert {client.invoke(csv_rows[0]).variant for _ in range(10)} == {"v1"}
    client.set_weights({"v1": 0})
    none = client.invoke(csv_rows[0])
    assert none.status == 503 and "weight > 0" in none.text
    client.set_weights({"v1": 1})


def test_delete_removes_processes_and_state(ep_settings: Settings, endpoint: EndpointState) -> None:
    state = describe_endpoint(ep_settings, NAME)
    pids = _pids(state)
    delete_endpoint(ep_settings, NAME)
    assert not any(pid_alive(p) for p in pids)
    assert not (ep_settings.endpoints_dir / NAME).exists()
    with pytest.raises(EndpointNotFoundError, match="does not exist"):
        describe_endpoint(ep_settings, NAME)
    with pytest.raises(EndpointNotFoundError):
        delete_endpoint(ep_settings, NAME)
    # captured data outlives the endpoint
    assert any(Path(state.capture.destination, NAME, "v1").rglob("*.jsonl"))
