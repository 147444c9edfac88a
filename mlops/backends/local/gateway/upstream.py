"""A lean HTTP/1.1 client for the gateway's hop to its model servers.

The gateway talks to model servers on loopback only, one request per connection at a time,
always ``POST``, with small, known headers. A general client (httpx: request and response
objects, header models, a pool that scans every connection per request) cost the gateway
more CPU per request than the model itself. This one keeps per server a stack of idle
kept-alive connections, each an :class:`asyncio.Protocol` with httptools' response parser:
a request is one ``transport.write`` and a future that the parser completes.

A request that finds its reused connection closed by the server before any byte of an
answer (the server's keep-alive timeout racing the request) is sent once more on a new
connection: the server dropped it unread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httptools

__all__ = ["Upstream", "UpstreamAnswer", "UpstreamTimeout", "UpstreamUnavailable"]

MAX_IDLE = 64
SWEEP_S = 0.5  # how often answers are checked against the timeout (not a timer per request)


class UpstreamUnavailable(Exception):
    """The server refused or dropped the connection before answering."""


class UpstreamTimeout(Exception):
    """The server did not connect or answer in time."""


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    """One answer: status, ``Content-Type`` (``b""`` when absent) and body."""

    status: int
    content_type: bytes
    body: bytes

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300


class _Connection(asyncio.Protocol):
    """One kept-alive connection; one request at a time."""

    __slots__ = (
        "_body",
        "_content_type",
        "_header",
        "_parser",
        "_pool",
        "_waiter",
        "answered_any",
        "closed",
        "sent_at",
        "transport",
    )

    def __init__(self, pool: Upstream) -> None:
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[UpstreamAnswer] | None = None
        self._body: list[bytes] = []
        self._content_type = b""
        self._header = b""
        self.answered_any = False  # a byte of the current answer came
        self.closed = False
        self.sent_at = 0.0  # loop time the current request was sent

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.answered_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamUnavailable(f"the model server's answer is not HTTP ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool._forget(self)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(
                UpstreamUnavailable("the model server closed the connection without answering")
            )

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 12 and name.lower() == b"content-type":
            self._content_type = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter = self._waiter
        answer = UpstreamAnswer(
            self._parser.get_status_code(), self._content_type, b"".join(self._body)
        )
        self._body = []
        self._content_type = b""
        keep = self._parser.should_keep_alive()
        self._waiter = None
        if keep:
            self._pool._release(self)
        else:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    # use

    def send(self, data: bytes, waiter: asyncio.Future[UpstreamAnswer], now: float) -> None:
        self._waiter = waiter
        self.answered_any = False
        self.sent_at = now
        assert self.transport is not None
        self.transport.write(data)

    def expire(self, timeout_s: float) -> None:
        """The answer did not come in time: fail the request and close."""
        self._fail(UpstreamTimeout(f"the model server did not answer within {timeout_s:g}s"))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        self._pool._forget(self)
        if self.transport is not None:
            self.transport.close()


class Upstream:
    """Kept-alive connections to one model server on ``host:port``.

    Args:
        host: the server's address (loopback).
        port: its port.
        connect_timeout_s: time to open a connection.
        timeout_s: time from sending a request to the end of its answer.
    """

    def __init__(
        self, host: str, port: int, *, connect_timeout_s: float = 2.0, timeout_s: float = 60.0
    ) -> None:
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # asked once: it costs a getpid()
        self._head = (
            f"POST /invocations HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-length: "
        ).encode()

    async def post(self, body: bytes, headers: bytes = b"") -> UpstreamAnswer:
        """``POST /invocations`` with ``body``.

        Args:
            body: the request body.
            headers: extra header lines, each ending in ``\\r\\n`` (already validated:
                they come from a parsed request).

        Raises:
            UpstreamUnavailable: the server cannot be reached or dropped the request.
            UpstreamTimeout: no connection or no whole answer in time.
        """
        data = b"%s%d\r\n%s\r\n%s" % (self._head, len(body), headers, body)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        for _ in range(2):
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._connect(loop)
            self._busy.add(conn)
            if self._sweeper is None:
                self._sweeper = loop.call_later(SWEEP_S, self._sweep, loop)
            waiter: asyncio.Future[UpstreamAnswer] = loop.create_future()
            try:
                conn.send(data, waiter, loop.time())
                return await waiter
            except UpstreamUnavailable:
                if reused and not conn.answered_any:
                    continue  # a kept-alive connection the server had closed: send it again
                raise
            except asyncio.CancelledError:
                conn.close()  # its answer would come to the next request otherwise
                raise
        raise UpstreamUnavailable("the model server closed the connection without answering")

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self), self.host, self.port
                )
        except TimeoutError:
            raise UpstreamTimeout(
                f"no connection to {self.host}:{self.port} within {self.connect_timeout_s:g}s"
            ) from None
        except OSError as exc:
            raise UpstreamUnavailable(
                f"cannot connect to {self.host}:{self.port} ({exc.strerror or exc})"
            ) from None
        return conn

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the requests waiting longer than the timeout; runs while any waits."""
        late = loop.time() - self.timeout_s
        for conn in [c for c in self._busy if c.sent_at <= late]:
            conn.expire(self.timeout_s)
        self._sweeper = loop.call_later(SWEEP_S, self._sweep, loop) if self._busy else None

    def _release(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        if not conn.closed and len(self._idle) < MAX_IDLE:
            self._idle.append(conn)
        else:
            conn.close()

    def _forget(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)

    def close(self) -> None:
        """Close every connection; requests in flight fail with :class:`UpstreamUnavailable`."""
        for conn in [*self._idle, *self._busy]:
            conn.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
