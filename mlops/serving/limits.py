"""Bounded requests: uvicorn's httptools protocol with a header cap and read deadlines.

uvicorn bounds idle kept-alive connections (``timeout_keep_alive``) and requests in flight
(``limit_concurrency``, answered 503), but with httptools it reads a request's headers
without limit (a 100 MB header costs seconds of CPU) and waits forever for headers or a
body that never finish. :class:`BoundedHttpToolsProtocol` adds, per connection:

- a cap on the request line and headers (``serving.max_header_bytes``): 431, then close;
- a deadline for the line and headers (``serving.header_timeout_s``, from the request's
  first byte, or from the connection for its first request): 408, then close;
- a deadline for the whole request, body included (``serving.request_timeout_s``): 408,
  then close; an app waiting for the body sees a disconnect;
- an exact count for ``limit_concurrency``: connections already closed but not yet dropped
  by the event loop do not count.

A deadline only covers reading the request; the answer takes what the model takes.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from mlops.settings_sections import ServingSettings

__all__ = ["BoundedHttpToolsProtocol"]


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header cap and deadlines for reading a request.

    Made by uvicorn for each connection, through ``functools.partial(...,
    limits=settings.serving)`` given as uvicorn's ``http`` protocol class.

    Args:
        config: uvicorn's config.
        server_state: uvicorn's server state.
        app_state: uvicorn's app state.
        limits: the settings with ``max_header_bytes``, ``header_timeout_s`` and
            ``request_timeout_s``.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ServingSettings,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._max_head = limits.max_header_bytes
        self._head_timeout = limits.header_timeout_s
        self._request_timeout = limits.request_timeout_s
        self._first_deadline = min(self._head_timeout, self._request_timeout)
        self._deadline: asyncio.TimerHandle | None = None
        self._started = 0.0  # when the request being read began
        self._head_bytes = 0
        self._in_head = False  # between a request's first byte and the end of its headers

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._started = self.loop.time()
        self._arm(self._first_deadline)  # the first request must come, headers and all

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head:
            # Counted after parsing each chunk, so the cost stays bounded by the cap plus one
            # read; the chunk a request starts in counts whole (an excess of one read at most).
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head and not self.transport.is_closing():
                self._refuse(
                    431,
                    f"the request line and headers are over {self._max_head} bytes; send "
                    "fewer or shorter headers (the server's serving.max_header_bytes)",
                )

    # ------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        if self._deadline is None:  # a new request on a kept-alive connection
            self._started = self.loop.time()
            self._arm(self._first_deadline)

    def on_headers_complete(self) -> None:
        self._in_head = False
        limit = self.limit_concurrency
        if limit is not None and len(self.connections) >= limit:
            # uvicorn also counts connections it has closed but not yet dropped (the event
            # loop drops them an iteration later): count only those still open.
            open_now = sum(1 for c in self.connections if not _closing(c))
            if open_now < limit and len(self.tasks) < limit:
                self.limit_concurrency = None
        try:
            super().on_headers_complete()
        finally:
            self.limit_concurrency = limit
        # No timer work here (most bodies come with their headers): the header deadline,
        # if it fires in the body, waits on for the rest of the request's time.

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    # ------------------------------------------------------------------ deadlines

    def _arm(self, delay: float) -> None:
        self._deadline = self.loop.call_later(delay, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport is None or self.transport.is_closing():
            return
        if self._in_head:
            self._refuse(
                408,
                f"the request line and headers did not arrive within {self._head_timeout:g}s "
                "(the server's serving.header_timeout_s)",
            )
        elif self.cycle is None or self.cycle.response_complete:
            self.transport.close()  # nothing to answer: no request, or it was answered
        elif (left := self._started + self._request_timeout - self.loop.time()) > 0:
            self._arm(left)  # the headers came in time; the body has until the deadline
        else:
            self._refuse(
                408,
                f"the request did not arrive whole within {self._request_timeout:g}s "
                "(the server's serving.request_timeout_s); send the body at once",
            )

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with a JSON error, unless another answer is due first; close."""
        in_head, self._in_head = self._in_head, False
        self._disarm()
        cycle = self.cycle  # while in a head: the previous request's, if any
        unanswered = cycle is not None and not cycle.response_complete
        if unanswered:
            # The app's receive() now reports a disconnect and its send() is ignored.
            cycle.disconnected = True
            cycle.keep_alive = False
            cycle.message_event.set()
        # A pipelined request still being answered, or an answer under way: only close.
        if not (unanswered and (in_head or cycle.response_started)):
            body = json.dumps({"error": message}).encode()
            self.transport.write(
                b"".join(
                    [
                        STATUS_LINE[status],
                        b"content-type: application/json\r\n",
                        b"content-length: %d\r\n" % len(body),
                        b"connection: close\r\n\r\n",
                        body,
                    ]
                )
            )
        self.transport.close()


def _closing(protocol: Any) -> bool:
    transport = getattr(protocol, "transport", None)
    return transport is None or transport.is_closing()
