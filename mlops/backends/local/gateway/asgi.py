"""Raw-ASGI plumbing shared by the gateway's parts: reading bodies, JSON answers, errors."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

__all__ = [
    "HttpError",
    "Receive",
    "Scope",
    "Send",
    "header",
    "read_body",
    "read_json",
    "send_json",
]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_Body = TypeVar("_Body", bound=BaseModel)

ADMIN_BODY_LIMIT = 1024 * 1024


class HttpError(Exception):
    """An error answer: ``status`` with ``{"error": message}`` and optional extra headers."""

    def __init__(
        self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of request header ``name`` (lower case), or ``None``."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body.

    Raises:
        HttpError: 413 over ``limit`` bytes, 400 when the client went away.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(400, "client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(
                413,
                f"payload is larger than the limit of {limit} bytes; send "
                "smaller batches or raise serving.max_payload_mb",
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def read_json(receive: Receive, model: type[_Body]) -> _Body:
    """The request body validated as ``model`` (an empty body is ``{}``).

    Raises:
        HttpError: 400 naming each invalid field.
    """
    body = await read_body(receive, ADMIN_BODY_LIMIT)
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise HttpError(400, f"invalid request body ({problems})") from None


async def send_json(
    send: Send, status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer ``status`` with ``payload`` as JSON."""
    body = json.dumps(payload).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *(headers or [])],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})
