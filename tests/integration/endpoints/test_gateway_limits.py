"""Bounded requests on an endpoint's gateway, judged from the client's side.

The model server's bounds (``tests/integration/serving/test_limits.py``) on the gateway's
invocations port, from the same ``serving`` settings: header cap 64 KiB (the default), 1 s
for a request's headers, 2 s for a whole request, 3 connections, a 2 MB payload limit. The
endpoint still answers at the end, whatever the tests did.
"""

from __future__ import annotations

import http.client
import select
import socket
import time
from collections.abc import Iterator

import pytest

from mlops.backends.local.gateway import (
    EndpointClient,
    VariantSpec,
    create_endpoint,
    delete_endpoint,
)
from mlops.backends.local.gateway.state import EndpointState
from mlops.settings import Settings
from tests.conftest import make_settings

pytestmark = pytest.mark.slow

NAME = "taxi-limits"
MAX_CONNECTIONS = 3
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def endpoint(
    trained_taxi: tuple[Settings, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EndpointState]:
    store, version = trained_taxi
    settings = make_settings(
        tmp_path_factory.mktemp("gateway-limits"),
        tracking_uri=store.effective_tracking_uri,
        serving={
            "workers": 1,
            "header_timeout_s": 1,
            "request_timeout_s": 2,
            "max_connections": MAX_CONNECTIONS,
            "keep_alive_s": 60,
            "max_payload_mb": 2,
        },
    )
    state = create_endpoint(settings, NAME, [VariantSpec("v1", f"models:/taxi/{version}")])
    try:
        yield state
        with EndpointClient.for_endpoint(settings, NAME) as client:
            answer = client.invoke(b"10.65,1,2.56\n", "text/csv")  # it still serves
        assert answer.status == 200, answer.text
        assert 5 < answer.predictions()[0] < 40
    finally:
        delete_endpoint(settings, NAME)


def fresh_ping(state: EndpointState) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", state.port, timeout=30)
    try:
        conn.request("GET", "/ping")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the gateway sends until it closes (a reset counts as closed)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def status_of(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer[9:12])


def send_huge_header(port: int, path: bytes) -> tuple[int, bytes]:
    """Stream a header of up to 100 MB; (bytes sent before the gateway stopped it, answer)."""
    sock = connect(port)
    sent = 0
    answer = b""
    closed = False
    try:
        sock.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        chunk = b"a" * (256 * 1024)
        while sent < 100 * MIB:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                answer = read_until_closed(sock)
                closed = True
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        if not closed:
            answer = read_until_closed(sock)  # what arrived before the close, if anything
    finally:
        sock.close()
    return sent, answer


def test_a_100_mb_header_is_refused_long_before_it_is_sent(endpoint: EndpointState) -> None:
    sent, answer = send_huge_header(endpoint.port, b"/invocations")
    # Only the kernel's socket buffers (a few MB) take more once the gateway stops reading.
    assert sent < 32 * MIB, f"the gateway took {sent} header bytes"
    # The 431 arrives unless the reset of the unread header bytes overtakes it.
    assert answer == b"" or status_of(answer) == 431, answer[:200]
    if answer:
        assert b"max_header_bytes" in answer
    assert fresh_ping(endpoint) == 200


def test_the_admin_port_caps_headers_too(endpoint: EndpointState) -> None:
    assert endpoint.admin_port is not None
    sent, answer = send_huge_header(endpoint.admin_port, b"/admin/state")
    assert sent < 32 * MIB, f"the admin port took {sent} header bytes"
    assert answer == b"" or status_of(answer) == 431, answer[:200]


def test_normal_headers_and_a_large_body_pass_through(endpoint: EndpointState) -> None:
    rows = b"".join(f"{1 + i % 50}.5,{1 + i % 4},{1 + i % 20}.25\n".encode() for i in range(100000))
    assert MIB < len(rows) < 2 * MIB  # arrives in the same reads as the headers
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=60)
    try:
        conn.request(
            "POST", "/invocations", rows, {"Content-Type": "text/csv", "X-Padding": "p" * 8000}
        )
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, body[:300]
    assert resp.getheader("X-Amzn-Invoked-Production-Variant") == "v1"
    assert len(body.splitlines()) == 100000


def test_a_body_over_the_payload_limit_is_answered_413(endpoint: EndpointState) -> None:
    sock = connect(endpoint.port)
    try:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
            b"Content-Length: %d\r\n\r\n" % (3 * MIB)
        )
        sock.sendall(b"1.5,1,2.25\n" * 1000)  # the gateway answers before the rest comes
        answer = read_until_closed(sock)
    finally:
        sock.close()
    assert status_of(answer) == 413, answer[:300]
    assert b"max_payload_mb" in answer


def test_an_incomplete_body_is_answered_408_and_closed(endpoint: EndpointState) -> None:
    sock = connect(endpoint.port)
    try:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
            b"Content-Length: 1000\r\n\r\n10.65,1,2.56\n"
        )
        started = time.monotonic()
        answer = read_until_closed(sock)  # the gateway ends it: no timeout of ours fires
        waited = time.monotonic() - started
    finally:
        sock.close()
    assert status_of(answer) == 408, answer[:300]
    assert b"connection: close" in answer.lower()
    assert b"request_timeout_s" in answer
    assert waited < 15  # 2 s, however slow the machine


def test_incomplete_headers_are_answered_408_and_an_idle_connection_is_closed(
    endpoint: EndpointState,
) -> None:
    partial, idle = connect(endpoint.port), connect(endpoint.port)
    try:
        partial.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Ty")
        answer = read_until_closed(partial)
        silence = read_until_closed(idle)  # never sent a byte: closed without an answer
    finally:
        partial.close()
        idle.close()
    assert status_of(answer) == 408, answer[:300]
    assert b"header_timeout_s" in answer
    assert silence == b""


def test_connections_above_the_limit_get_503_while_the_others_are_served(
    endpoint: EndpointState,
) -> None:
    deadline = time.monotonic() + 10
    kept: list[http.client.HTTPConnection] = []
    try:
        while len(kept) < MAX_CONNECTIONS:  # (until the gateway saw earlier tests' closes)
            conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
            conn.request("GET", "/ping")
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                kept.append(conn)
                continue
            conn.close()
            assert time.monotonic() < deadline, f"ping answered {resp.status}"
            time.sleep(0.05)
        for _ in range(3):
            extra = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
            try:
                extra.request(
                    "POST", "/invocations", b"10.65,1,2.56\n", {"Content-Type": "text/csv"}
                )
                resp = extra.getresponse()
                body = resp.read()
                assert resp.status == 503, body
                assert b"max_connections" in body
                assert resp.will_close  # the gateway closes what it cannot serve
            finally:
                extra.close()
            for conn in kept:  # the connections within the limit go on being served
                conn.request(
                    "POST", "/invocations", b"10.65,1,2.56\n", {"Content-Type": "text/csv"}
                )
                resp = conn.getresponse()
                assert resp.status == 200, resp.read()
                assert 5 < float(resp.read()) < 40
    finally:
        for conn in kept:
            conn.close()
    deadline = time.monotonic() + 10
    while fresh_ping(endpoint) != 200 and time.monotonic() < deadline:
        time.sleep(0.05)  # the gateway notices the closed connections
    assert fresh_ping(endpoint) == 200
