"""Bounded requests on the model server, judged from the client's side.

One server with small limits set through ``MLOPS_SERVING__*``: header cap 64 KiB (the
default), 1 s for a request's headers, 2 s for a whole request, 3 connections per worker.
"""

from __future__ import annotations

import http.client
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops.settings import Settings
from tests.integration.serving import Server, server_env, start_server

pytestmark = pytest.mark.slow

MAX_CONNECTIONS = 3
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(
    trained_taxi: tuple[Settings, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    settings, version = trained_taxi
    env = server_env(
        settings,
        MLOPS_SERVING__HEADER_TIMEOUT_S="1",
        MLOPS_SERVING__REQUEST_TIMEOUT_S="2",
        MLOPS_SERVING__MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        MLOPS_SERVING__KEEP_ALIVE_S="60",
    )
    args = ["--model", f"taxi/{version}", "--workers", "1"]
    with start_server(args, tmp_path_factory.mktemp("limits"), env=env) as srv:
        yield srv
        assert fresh_ping(srv) == 200  # whatever the tests did, it still serves
        assert srv.proc.poll() is None


def fresh_ping(server: Server) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", "/ping")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def ping_until_served(conn: http.client.HTTPConnection, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while True:
        conn.request("GET", "/ping")
        resp = conn.getresponse()
        resp.read()
        if resp.status != 503 or time.monotonic() > deadline:
            return resp.status
        time.sleep(0.05)


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed)."""
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


def test_a_100_mb_header_is_refused_long_before_it_is_sent(server: Server) -> None:
    sock = connect(server)
    sent = 0
    answer = b""
    closed = False
    try:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-Huge: ")
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
    # Only the kernel's socket buffers (a few MB) take more once the server stops reading.
    assert sent < 32 * MIB, f"the server took {sent} header bytes"
    # The 431 arrives unless the reset of the unread header bytes overtakes it.
    assert answer == b"" or status_of(answer) == 431, answer[:200]
    if answer:
        assert b"max_header_bytes" in answer
    assert fresh_ping(server) == 200


def test_normal_headers_and_a_large_body_are_not_mistaken_for_a_huge_header(
    server: Server,
) -> None:
    rows = b"".join(f"{1 + i % 50}.5,{1 + i % 4},{1 + i % 20}.25\n".encode() for i in range(100000))
    assert len(rows) > MIB  # arrives in the same reads as the headers
    resp = server.invoke(rows, headers={"X-Padding": "p" * 8000})
    assert resp.status == 200, resp.body[:300]
    assert len(resp.body.splitlines()) == 100000


def test_an_incomplete_body_is_answered_408_and_closed(server: Server) -> None:
    sock = connect(server)
    try:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
            b"Content-Length: 1000\r\n\r\n10.65,1,2.56\n"
        )
        answer = read_until_closed(sock)  # the server ends it: no timeout of ours fires
    finally:
        sock.close()
    assert status_of(answer) == 408, answer[:300]
    assert b"connection: close" in answer.lower()
    assert b"request_timeout_s" in answer


def test_incomplete_headers_are_answered_408_and_an_idle_connection_is_closed(
    server: Server,
) -> None:
    partial, idle = connect(server), connect(server)
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
    server: Server,
) -> None:
    server.close()  # the fixture's own kept-alive connection would count
    kept = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            for _ in range(MAX_CONNECTIONS)]
    try:
        for conn in kept:  # (until the server has seen the fixture's connection close)
            assert ping_until_served(conn) == 200
        for _ in range(3):
            extra = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                extra.request("GET", "/ping")
                resp = extra.getresponse()
                resp.read()
                assert resp.status == 503
                assert resp.will_close  # the server closes what it cannot serve
            finally:
                extra.close()
            for conn in kept:  # the connections within the limit go on being served
                conn.request("POST", "/invocations", b"10.65,1,2.56\n",
                             {"Content-Type": "text/csv"})
                resp = conn.getresponse()
                assert resp.status == 200, resp.read()
                assert 5 < float(resp.read()) < 40
    finally:
        for conn in kept:
            conn.close()
    deadline = time.monotonic() + 10
    while fresh_ping(server) != 200 and time.monotonic() < deadline:
        time.sleep(0.05)  # the server notices the closed connections
    assert fresh_ping(server) == 200


def test_limits_are_documented_settings(tmp_path: Path) -> None:
    from mlops.settings_sections import ServingSettings

    serving = ServingSettings()
    assert serving.max_header_bytes == 64 * 1024
    assert (serving.header_timeout_s, serving.request_timeout_s) == (10.0, 60.0)
    assert (serving.keep_alive_s, serving.max_connections) == (5, 1000)
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    for name in ("max_header_bytes", "header_timeout_s", "request_timeout_s", "keep_alive_s",
                 "max_connections"):
        assert f"serving.{name}" in readme
