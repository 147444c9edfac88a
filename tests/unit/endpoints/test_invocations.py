"""The invocations port's HTTP/1.1 server, on a loopback socket with a handler of ours.

What HTTP clients rely on (keep-alive, pipelining, chunked bodies, ``Expect``, ``HEAD``,
errors as JSON) and the bounds it shares with the model server, with small limits.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mlops.backends.local.gateway.invocations import (
    InvocationsServer,
    Request,
    Response,
    json_response,
)
from mlops.settings_sections import ServingSettings

Handler = Callable[[Request], Awaitable[Response]]

LIMITS = ServingSettings(
    max_header_bytes=4096,
    header_timeout_s=0.5,
    request_timeout_s=1.0,
    keep_alive_s=1,
    max_connections=2,
)


async def echo(request: Request) -> Response:
    """Answers with what it got, as JSON; sleeps when asked to."""
    delay = float(request.headers.get(b"x-delay", b"0"))
    if delay:
        await asyncio.sleep(delay)
    if request.path == b"/fail":
        raise RuntimeError("the handler failed")
    doc = {
        "method": request.method.decode(),
        "path": request.path.decode(),
        "body": request.body.decode(),
        "type": request.headers.get(b"content-type", b"").decode(),
    }
    return json_response(200, doc, b"x-extra: 1\r\n")


def serve(
    client: Callable[[int], Any],
    handler: Handler = echo,
    limits: ServingSettings = LIMITS,
    max_body: int = 1000,
) -> Any:
    """Run an InvocationsServer on a free port, ``client(port)`` in a thread; its result."""

    async def main() -> Any:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = InvocationsServer(handler, limits, max_body)
        await server.start(sock)
        try:
            return await asyncio.to_thread(client, sock.getsockname()[1])
        finally:
            await server.close(1.0)

    return asyncio.run(main())


def exchange(port: int, data: bytes, *, expect: int | None = None) -> bytes:
    """Send ``data``, then read until ``expect`` whole answers came (the connection stays
    open), or else until the server closes; a server that does neither fails the test."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while expect is None or not _whole(received, expect):
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return received


def _whole(raw: bytes, count: int) -> bool:
    try:
        found = answers(raw)
    except (ValueError, IndexError):
        return False
    return len(found) >= count and all(
        len(body) == int(headers.get("content-length", 0)) for _, headers, body in found
    )


def answers(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a stream of answers (each with a content-length) into (status, headers, body)."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", 0))
        found.append((status, headers, rest[:length]))
        raw = rest[length:]
    return found


POST = (
    b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
    b"Content-Length: %d\r\n%s\r\n%s"
)


def post(body: bytes, extra: bytes = b"") -> bytes:
    return POST % (len(body), extra, body)


def test_a_request_is_answered_with_the_handlers_response_and_kept_alive() -> None:
    raw = serve(lambda port: exchange(port, post(b"1,2\n"), expect=1))
    [(status, headers, body)] = answers(raw)
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["x-extra"] == "1"
    assert "connection" not in headers  # kept alive
    assert json.loads(body) == {
        "method": "POST",
        "path": "/invocations",
        "body": "1,2\n",
        "type": "text/csv",
    }


def test_pipelined_requests_are_answered_in_order() -> None:
    slow_first = post(b"first", b"X-Delay: 0.2\r\n") + post(b"second") + post(b"third")
    raw = serve(lambda port: exchange(port, slow_first, expect=3))
    bodies = [json.loads(body)["body"] for _, _, body in answers(raw)]
    assert bodies == ["first", "second", "third"]


def test_a_chunked_body_is_read_whole_and_a_query_is_not_the_path() -> None:
    data = (
        b"POST /invocations?x=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\n1,2\r\n2\r\n,3\r\n0\r\n\r\n"
    )
    raw = serve(lambda port: exchange(port, data, expect=1))
    [(status, _, body)] = answers(raw)
    assert status == 200
    assert json.loads(body)["body"] == "1,2,3"
    assert json.loads(body)["path"] == "/invocations"


def test_expect_100_continue_is_answered_before_the_body() -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            interim = sock.recv(100)
            sock.sendall(b"abc")
            return interim + sock.recv(65536)

    raw = serve(client)
    assert raw.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")


def test_head_gets_the_headers_without_the_body_and_connection_close_is_honoured() -> None:
    data = b"HEAD /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw = serve(lambda port: exchange(port, data))
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" in head
    assert int(head.split(b"content-length: ")[1].split(b"\r\n")[0]) > 0
    assert rest == b""  # and the server closed: exchange reads until the close


def test_a_failing_handler_is_a_500_and_garbage_a_400() -> None:
    failed = serve(lambda port: exchange(port, b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n", expect=1))
    [(status, _, body)] = answers(failed)
    assert status == 500 and b"internal error of the gateway" in body
    garbage = serve(lambda port: exchange(port, b"NOT HTTP AT ALL\r\n\r\n"))
    [(status, headers, body)] = answers(garbage)
    assert status == 400 and headers["connection"] == "close"
    assert b"invalid HTTP request" in body


def test_a_body_over_the_limit_is_answered_413_before_it_all_arrives() -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(POST % (100_000, b"", b"1" * 5000))
            return sock.recv(65536)  # the answer comes while the client still owes a body

    [(status, headers, body)] = answers(serve(client))
    assert status == 413 and headers["connection"] == "close"
    assert b"max_payload_mb" in body


def test_headers_over_the_cap_get_431() -> None:
    data = b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n"
    [(status, _, body)] = answers(serve(lambda port: exchange(port, data)))
    assert status == 431 and b"max_header_bytes" in body


@pytest.mark.parametrize(
    ("data", "status", "setting"),
    [
        (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Le", 408, b"header_timeout_s"),
        (POST % (10, b"", b"12345"), 408, b"request_timeout_s"),
    ],
)
def test_slow_requests_get_408(data: bytes, status: int, setting: bytes) -> None:
    [(got, headers, body)] = answers(serve(lambda port: exchange(port, data)))
    assert got == status and headers["connection"] == "close"
    assert setting in body


def test_idle_connections_are_closed_silently() -> None:
    def client(port: int) -> tuple[bytes, bytes]:
        silent = exchange(port, b"")  # never a byte: closed after header_timeout_s
        after_one = exchange(port, post(b"1"))  # closed keep_alive_s after its answer
        return silent, after_one

    silent, after_one = serve(client)
    assert silent == b""
    assert [status for status, _, _ in answers(after_one)] == [200]


def test_connections_beyond_the_limit_get_503_and_those_admitted_are_served() -> None:
    def client(port: int) -> list[int]:
        admitted = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        try:
            extra = exchange(port, post(b"x"))
            statuses = [answers(extra)[0][0]]
            for sock in admitted:
                sock.sendall(post(b"1"))
                statuses.append(answers(sock.recv(65536))[0][0])
            return statuses
        finally:
            for sock in admitted:
                sock.close()

    relaxed = LIMITS.model_copy(update={"header_timeout_s": 5.0, "request_timeout_s": 5.0})
    assert serve(client, limits=relaxed) == [503, 200, 200]
