"""The gateway's client of its model servers, against small loopback servers of ours."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mlops.backends.local.gateway.upstream import Upstream, UpstreamTimeout, UpstreamUnavailable

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: text/csv\r\ncontent-length: %d\r\n\r\n%s"

Behaviour = Callable[[bytes, asyncio.StreamWriter, int], Awaitable[bool]]


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return await reader.readexactly(length)


def run(behaviour: Behaviour, client: Callable[[Upstream], Awaitable[Any]], **kw: float) -> Any:
    """Serve ``behaviour`` (per request: answer and say whether to keep the connection) on
    a free port and run ``client`` against it; (client's result, connections accepted)."""
    accepted = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        number = 0
        while (body := await _read_request(reader)) is not None:
            number += 1
            if not await behaviour(body, writer, number):
                break
        writer.close()

    async def main() -> Any:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        upstream = Upstream("127.0.0.1", port, **kw)
        try:
            return await client(upstream), accepted
        finally:
            upstream.close()
            server.close()

    return asyncio.run(main())


async def echo(body: bytes, writer: asyncio.StreamWriter, number: int) -> bool:
    writer.write(ANSWER % (len(body), body))
    return True


def test_sequential_requests_share_one_kept_alive_connection() -> None:
    async def client(upstream: Upstream) -> list[bytes]:
        return [(await upstream.post(b"%d" % i, b"x-a: 1\r\n")).body for i in range(5)]

    bodies, accepted = run(echo, client)
    assert bodies == [b"0", b"1", b"2", b"3", b"4"]
    assert accepted == 1


def test_concurrent_requests_get_connections_of_their_own() -> None:
    async def slow(body: bytes, writer: asyncio.StreamWriter, number: int) -> bool:
        await asyncio.sleep(0.05)
        return await echo(body, writer, number)

    async def client(upstream: Upstream) -> list[bytes]:
        answers = await asyncio.gather(*(upstream.post(b"%d" % i) for i in range(4)))
        return [a.body for a in answers]

    bodies, accepted = run(slow, client)
    assert bodies == [b"0", b"1", b"2", b"3"]
    assert accepted == 4


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error() -> None:
    async def one_each(body: bytes, writer: asyncio.StreamWriter, number: int) -> bool:
        await echo(body, writer, number)
        return False  # the keep-alive timeout of a real server, at once

    async def client(upstream: Upstream) -> list[bytes]:
        first = await upstream.post(b"a")
        second = await upstream.post(b"b")  # finds the closed connection, or a new one
        return [first.body, second.body]

    bodies, accepted = run(one_each, client)
    assert bodies == [b"a", b"b"]
    assert accepted == 2


def test_an_answer_cut_short_is_an_error_not_a_retry() -> None:
    async def cut(body: bytes, writer: asyncio.StreamWriter, number: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        return False

    async def client(upstream: Upstream) -> None:
        with pytest.raises(UpstreamUnavailable, match="closed the connection"):
            await upstream.post(b"x")

    _, accepted = run(cut, client)
    assert accepted == 1


def test_no_answer_in_time_is_a_timeout() -> None:
    async def silent(body: bytes, writer: asyncio.StreamWriter, number: int) -> bool:
        await asyncio.sleep(5)
        return False

    async def client(upstream: Upstream) -> None:
        with pytest.raises(UpstreamTimeout, match="did not answer within 0.2s"):
            await upstream.post(b"x")

    run(silent, client, timeout_s=0.2)


def test_a_closed_port_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused

        async def main() -> None:
            upstream = Upstream("127.0.0.1", port)
            with pytest.raises(UpstreamUnavailable, match="cannot connect"):
                await upstream.post(b"x")

        asyncio.run(main())
