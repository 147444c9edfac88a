"""The HTTP/1.1 server of a gateway's invocations port: a lean asyncio protocol.

Every request an endpoint serves crosses this server and the hop to a model server, on the
same cores as the model. Under uvicorn, each request cost the gateway a task, an ASGI cycle,
message dicts and header lists: about 145 µs of CPU per proxied request, with httpx as much
again, where the model itself takes about 220 µs. Here a connection is one
:class:`asyncio.Protocol` with httptools' parser; a whole request (line, the headers as a
dict, the body) is handed to the handler once, and its :class:`Response` is written with one
``transport.write``. The admin API, which is not on the hot path, stays on uvicorn.

The same bounds as the model server (:mod:`mlops.serving.limits`), from ``serving.*``:

- ``max_header_bytes``: request line and headers above it get 431, then close;
- ``header_timeout_s``: the line and headers must arrive within it (from the request's first
  byte, or from the connection for its first request): 408, then close; a connection that
  sends nothing is closed without an answer;
- ``request_timeout_s``: the whole request, body included: 408, then close;
- ``keep_alive_s``: an idle kept-alive connection is closed after it;
- ``max_connections``: connections served at once; a request on a connection accepted
  beyond them gets 503, then close (connections already admitted are never refused);
- the payload limit (``serving.max_payload_mb``): 413, then close.

After a 413 or 503 the connection stops sending but reads (and drops) what the client still
sends for up to 2 s, so that the client sees the answer instead of a reset.

Requests pipelined on one connection are answered in order, one at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING

import httptools

if TYPE_CHECKING:
    import socket

    from mlops.settings_sections import ServingSettings

__all__ = ["InvocationsServer", "Request", "Response", "json_response"]

logger = logging.getLogger(__name__)

MAX_PIPELINED = 16  # requests read ahead on one connection before it stops reading
LINGER_S = 2.0  # after a 413 or 503: the rest of the body is read and dropped for so long
SWEEP_S = 0.1  # how often deadlines are checked (one timer per server, not per request)


@dataclass(slots=True)
class Request:
    """One whole request.

    Attributes:
        method: e.g. ``b"POST"``.
        path: the target without its query, e.g. ``b"/invocations"``.
        headers: lower-case names to values (the last one of a repeated header).
        body: the body, de-chunked.
    """

    method: bytes
    path: bytes
    headers: dict[bytes, bytes]
    body: bytes


@dataclass(slots=True)
class Response:
    """One answer: status, content type, body, and extra header lines (each ending in
    ``\\r\\n``)."""

    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: bytes = b""


Handler = Callable[[Request], Awaitable[Response]]


def json_response(status: int, payload: object, headers: bytes = b"") -> Response:
    """A JSON answer."""
    return Response(status, json.dumps(payload).encode(), b"application/json", headers)


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


_STATUS_LINES = {s.value: _status_line(s.value) for s in HTTPStatus}


class InvocationsServer:
    """Serves one listening socket with :class:`HttpConnection` and a request handler.

    Args:
        handler: answers a whole request (the router).
        limits: the ``serving`` settings with the bounds above.
        max_body: the payload limit in bytes.
    """

    def __init__(self, handler: Handler, limits: ServingSettings, max_body: int) -> None:
        self.handler = handler
        self.max_body = max_body
        self.max_head = limits.max_header_bytes
        self.header_timeout_s = limits.header_timeout_s
        self.request_timeout_s = limits.request_timeout_s
        self.keep_alive_s = float(limits.keep_alive_s)
        self.max_connections = limits.max_connections
        self.connections: set[HttpConnection] = set()
        self.admitted: set[HttpConnection] = set()
        self.closing = False
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, sock: socket.socket) -> None:
        """Listen on ``sock`` (bound already)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpConnection(self, loop), sock=sock, backlog=2048
        )
        self._sweeper = loop.call_later(SWEEP_S, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Act on the connections whose deadline passed (a timer per request would cost
        more than the rest of the request's work in the gateway)."""
        now = loop.time()
        for conn in [c for c in self.connections if 0.0 < c.deadline <= now]:
            conn.deadline = 0.0
            conn.on_deadline()
        self._sweeper = loop.call_later(SWEEP_S, self._sweep, loop)

    def admit(self, conn: HttpConnection) -> bool:
        """Whether ``conn`` is within ``max_connections`` (it is counted from then on)."""
        if conn in self.admitted:
            return True
        if len(self.admitted) < self.max_connections:
            self.admitted.add(conn)
            return True
        return False

    async def close(self, grace_s: float) -> None:
        """Stop listening, let the requests in flight be answered (for up to ``grace_s``),
        then close every connection."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close_when_idle()
        deadline = time.monotonic() + grace_s
        while any(c.busy for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()


class HttpConnection(asyncio.Protocol):
    """One client connection: parses requests, applies the bounds, answers in order."""

    def __init__(self, server: InvocationsServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.busy = False  # a request is with the handler
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps weak references
        self._queue: deque[tuple[Request, bool]] = deque()
        self._paused = False
        self.deadline = 0.0  # loop time at which on_deadline is called; 0: none
        self.on_deadline: Callable[[], None] = self._read_timed_out
        self._started = 0.0  # when the request being read began
        self._reading = False  # between a request's first byte and its end
        self._in_head = False  # between a request's first byte and the end of its headers
        self._head_bytes = 0  # bytes of the chunks read while in a request's head
        self._head_size = 0  # the head's parsed size: its target and its header lines
        self._refused = False
        self._lingering = False
        self._awaiting_first = True
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._size = 0

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        self.server.admit(self)
        server = self.server
        self._started = self.loop.time()
        self._arm(min(server.header_timeout_s, server.request_timeout_s), self._read_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.server.admitted.discard(self)
        self._disarm()
        self._queue.clear()
        # A request with the handler runs to its end (its answer is counted and captured
        # like any other); only the write of its answer is skipped.

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # what is left of a refused request
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not supported; send plain HTTP/1.1")
            return
        except httptools.HttpParserError as exc:
            if not self._refused:
                self._refuse(400, f"invalid HTTP request ({exc})")
            return
        if self._in_head and not self._refused:
            # A head still incomplete after this chunk: counted by the chunk, so that a huge
            # one costs the cap plus one read (the parser keeps what it has seen so far).
            self._head_bytes += len(data)
            if self._head_bytes > self.server.max_head:
                self._head_too_large()

    # ------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        self._reading = self._in_head = True
        self._head_bytes = self._head_size = 0
        self._url = b""
        self._headers = {}
        self._body = []
        self._size = 0
        if self._awaiting_first:
            self._awaiting_first = False  # its deadline runs from the connection
        else:  # a request on a kept-alive connection: from its first byte
            self._started = self.loop.time()
            server = self.server
            self._arm(min(server.header_timeout_s, server.request_timeout_s), self._read_timed_out)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value
        # A head that came whole in one chunk is measured here, as it is parsed.
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.server.max_head and not self._refused:
            self._head_too_large()

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._refused:
            return
        if not self.server.admit(self):
            self._refuse(
                503,
                f"the endpoint serves {self.server.max_connections} connections at once (the "
                "gateway's serving.max_connections); retry on a new connection later",
                linger=True,
            )
            return
        length = self._headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.server.max_body:
            self._too_large()
            return
        if self._headers.get(b"expect", b"").lower() == b"100-continue":
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._size += len(body)
        if self._size > self.server.max_body:
            self._too_large()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._reading = False
        self._disarm()
        url = self._url
        query = url.find(b"?")
        request = Request(
            self.parser.get_method(),
            url if query < 0 else url[:query],
            self._headers,
            b"".join(self._body),
        )
        keep_alive = self.parser.should_keep_alive()
        self._body = []
        if self.busy:
            self._queue.append((request, keep_alive))
            if len(self._queue) >= MAX_PIPELINED and not self._paused:
                assert self.transport is not None
                self.transport.pause_reading()
                self._paused = True
        else:
            self._dispatch(request, keep_alive)

    # ------------------------------------------------------------------ answering

    def _dispatch(self, request: Request, keep_alive: bool) -> None:
        self.busy = True
        self._task = self.loop.create_task(self._serve(request, keep_alive))

    async def _serve(self, request: Request, keep_alive: bool) -> None:
        try:
            response = await self.server.handler(request)
        except Exception:  # answered 500 and logged: the connection must not hang
            logger.exception("the gateway failed on %s %s", request.method, request.path)
            response = json_response(500, {"error": "internal error of the gateway; see its log"})
        self.busy = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        keep_alive = keep_alive and not self.server.closing
        self._write(response, keep_alive, head=request.method == b"HEAD")
        if not keep_alive:
            transport.close()
        elif self._queue:
            self._dispatch(*self._queue.popleft())
            if self._paused and len(self._queue) < MAX_PIPELINED:
                transport.resume_reading()
                self._paused = False
        elif not self._reading:
            self._arm(self.server.keep_alive_s, self._idle_timed_out)

    def _write(self, response: Response, keep_alive: bool, head: bool = False) -> None:
        assert self.transport is not None
        status = response.status
        line = _STATUS_LINES.get(status) or _status_line(status)
        self.transport.write(
            b"%scontent-type: %s\r\ncontent-length: %d\r\n%s%s\r\n%s"
            % (
                line,
                response.content_type,
                len(response.body),
                response.headers,
                b"" if keep_alive else b"connection: close\r\n",
                b"" if head else response.body,
            )
        )

    def close_when_idle(self) -> None:
        """At shutdown: close now when no request is being answered; else after its answer
        (``server.closing`` turns keep-alive off)."""
        if not self.busy and not self._queue and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close at once."""
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------------ bounds

    def _head_too_large(self) -> None:
        self._refuse(
            431,
            f"the request line and headers are over {self.server.max_head} bytes; send fewer "
            "or shorter headers (the gateway's serving.max_header_bytes)",
        )

    def _too_large(self) -> None:
        self._refuse(
            413,
            f"payload is larger than the limit of {self.server.max_body} bytes; send smaller "
            "batches or raise serving.max_payload_mb",
            linger=True,
        )

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self.deadline = self.loop.time() + delay
        self.on_deadline = callback

    def _disarm(self) -> None:
        self.deadline = 0.0

    def _idle_timed_out(self) -> None:
        if not self.busy and not self._reading and self.transport is not None:
            self.transport.close()

    def _read_timed_out(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        server = self.server
        if self._in_head:
            self._refuse(
                408,
                f"the request line and headers did not arrive within "
                f"{server.header_timeout_s:g}s (the gateway's serving.header_timeout_s)",
            )
        elif not self._reading:
            if not self.busy:
                transport.close()  # no request came
        elif (left := self._started + server.request_timeout_s - self.loop.time()) > 0:
            self._arm(left, self._read_timed_out)  # the headers came in time; the body may
        else:
            self._refuse(
                408,
                f"the request did not arrive whole within {server.request_timeout_s:g}s "
                "(the gateway's serving.request_timeout_s); send the body at once",
            )

    def _refuse(self, status: int, message: str, *, linger: bool = False) -> None:
        """Answer ``status`` with a JSON error (unless an earlier request's answer is still
        due: then only close), and close; with ``linger``, first read and drop what the
        client still sends for a while."""
        self._refused = True
        self._in_head = self._reading = False
        self._disarm()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.busy or self._queue:
            transport.close()
            return
        self._write(json_response(status, {"error": message}), keep_alive=False)
        if linger and transport.can_write_eof():
            transport.write_eof()
            self._lingering = True
            self._arm(LINGER_S, transport.close)
        else:
            transport.close()
