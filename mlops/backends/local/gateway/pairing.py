"""Paired predictions for a rollout's model-signal gate: green's requests mirrored to blue.

While a rollout bakes, its controller switches pairing on for its green and blue
(``PUT /admin/pairing``) and off at the end (``DELETE /admin/pairing``). The router offers
every successful answer green gives a caller (:meth:`Pairing.offer`); a sample of them is
sent again to blue in the background, shadow-style, and the two answers are kept as
(green, blue) pairs, one per row, that the controller reads with ``GET /admin/pairing``.

A mirrored request is never seen by the caller, who already has green's answer:

* it is not counted in blue's served metrics (the admin API's, the per-minute records),
  only in the pairing's own counts;
* blue's model server does not capture it: the request carries the endpoint's mirror token
  (:func:`mirror_token`, derived from the admin token, owner-only) in ``X-Mlops-Mirror``,
  and each model server the gateway starts knows that token (``_MLOPS_MIRROR_TOKEN``);
  callers cannot send it, the router forwards only its own list of headers;
* it is bounded: a sampling rate, a cap on mirrors per second (token bucket), a cap on
  mirrors in flight, and a timeout; what is left out is counted, never queued.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import random
import time
import uuid
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from mlops.capture import parse_predictions
from mlops.serving.app import MIRROR_HEADER, MIRROR_TOKEN_ENV

if TYPE_CHECKING:
    import httpx

    from mlops.backends.local.gateway.variants import Variant

__all__ = [
    "MAX_PAIRS",
    "MIRROR_HEADER",
    "MIRROR_TOKEN_ENV",
    "Pairing",
    "PairingConfig",
    "mirror_token",
]

MAX_PAIRS = 100_000
"""Pairs kept in memory (a ring buffer); a reader that falls behind loses the oldest."""

_COUNTS = (
    "offered",  # green's successful answers seen
    "sampled_out",  # left out by the sampling rate
    "rate_limited",  # left out by the cap per second
    "busy",  # left out: max_inflight mirrors already waiting for blue
    "blue_unavailable",  # blue removed or not InService
    "mirrored",  # sent to blue
    "failed",  # blue answered with an error or could not be reached
    "timed_out",  # blue did not answer within timeout_s
    "mismatched",  # answers that could not be paired row by row
    "paired_requests",  # requests whose rows were all paired
)


def mirror_token(admin_token: str) -> str:
    """The token mirrored requests carry: derived from the endpoint's admin token, so it is
    as private as that, and the same for every gateway of the endpoint (adopted model
    servers keep recognising it)."""
    return hmac.new(admin_token.encode(), b"mlops-mirror", "sha256").hexdigest()


class PairingConfig(BaseModel):
    """Body of ``PUT /admin/pairing``: which variants to pair and how much to mirror."""

    model_config = ConfigDict(extra="forbid")

    green: str = Field(description="the variant whose answers are mirrored")
    blue: str = Field(description="the variant that answers the copies")
    sample_rate: float = Field(1.0, gt=0, le=1, description="share of green's answers")
    max_per_s: float = Field(50.0, gt=0, le=10_000, description="cap on mirrors per second")
    max_inflight: int = Field(8, ge=1, le=256, description="mirrors waiting for blue at once")
    timeout_s: float = Field(5.0, gt=0, le=60, description="blue's time to answer a mirror")


class Pairing:
    """Mirrors a sample of green's requests to blue and keeps the paired predictions.

    Args:
        config: the variants and the bounds.
        variants: the gateway's variants by name (blue's address and status are read at
            each mirror).
        token: the mirror token (:func:`mirror_token`).
        transport: the HTTP transport to blue (tests: ``httpx.MockTransport``).
    """

    def __init__(
        self,
        config: PairingConfig,
        variants: dict[str, Variant],
        token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        import httpx

        self.config = config
        self.id = uuid.uuid4().hex
        self.started_at = time.time()
        self.counts: Counter[str] = Counter(dict.fromkeys(_COUNTS, 0))
        self._variants = variants
        self._token = token
        self._pairs: deque[tuple[int, Any, Any]] = deque(maxlen=MAX_PAIRS)
        self._seq = 0
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._tokens = max(config.max_per_s, 1.0)  # a full bucket: one second's worth
        self._refilled = time.monotonic()
        self._closed = False
        self._client: httpx.AsyncClient = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout_s, connect=min(config.timeout_s, 2.0)),
            limits=httpx.Limits(
                max_connections=config.max_inflight, max_keepalive_connections=config.max_inflight
            ),
            trust_env=False,  # loopback traffic never goes through a proxy from the env
            transport=transport,
        )

    def offer(
        self,
        variant: str,
        body: bytes,
        headers: dict[str, str],
        answer: bytes,
        content_type: str,
    ) -> None:
        """Consider one successful answer of ``variant`` for mirroring; returns at once.

        Args:
            variant: the variant that answered the caller.
            body: the request body.
            headers: the headers the router forwarded (content type, accept, ...).
            answer: the answer's body, as the caller got it.
            content_type: the answer's content type.
        """
        if variant != self.config.green or self._closed:
            return
        self.counts["offered"] += 1
        if self.config.sample_rate < 1.0 and random.random() >= self.config.sample_rate:
            self.counts["sampled_out"] += 1
            return
        if not self._take_token():
            self.counts["rate_limited"] += 1
            return
        if self._inflight >= self.config.max_inflight:
            self.counts["busy"] += 1
            return
        blue = self._variants.get(self.config.blue)
        if blue is None or blue.removed or blue.state.status != "InService":
            self.counts["blue_unavailable"] += 1
            return
        self._inflight += 1
        self.counts["mirrored"] += 1
        copy = {k: v for k, v in headers.items() if k.lower() != "x-amzn-sagemaker-inference-id"}
        copy[MIRROR_HEADER.decode()] = self._token
        task = asyncio.get_running_loop().create_task(
            self._mirror(blue.url, body, copy, answer, content_type)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take_token(self) -> bool:
        """Token bucket: ``max_per_s`` mirrors a second, bursts of one second's worth."""
        rate = self.config.max_per_s
        now = time.monotonic()
        self._tokens = min(max(rate, 1.0), self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    async def _mirror(
        self, url: str, body: bytes, headers: dict[str, str], answer: bytes, content_type: str
    ) -> None:
        import httpx

        try:
            resp = await self._client.post(f"{url}/invocations", content=body, headers=headers)
        except httpx.TimeoutException:
            self.counts["timed_out"] += 1
            return
        except httpx.HTTPError:
            self.counts["failed"] += 1
            return
        finally:
            self._inflight -= 1
        if not resp.is_success:
            self.counts["failed"] += 1
            return
        green = parse_predictions(answer, content_type, labels=True)
        blue = parse_predictions(resp.content, resp.headers.get("content-type"), labels=True)
        if not green or len(green) != len(blue):
            self.counts["mismatched"] += 1
            return
        for g, b in zip(green, blue, strict=True):
            self._seq += 1
            self._pairs.append((self._seq, _plain(g), _plain(b)))
        self.counts["paired_requests"] += 1

    def summary(self, after: int | None = None) -> dict[str, Any]:
        """The pairing's configuration and counts; with ``after``, the pairs numbered above
        it (``next`` is the number to ask after next time, ``first`` the oldest kept)."""
        doc: dict[str, Any] = {
            "active": True,
            "id": self.id,
            "started_at": self.started_at,
            **self.config.model_dump(),
            "counts": dict(self.counts),
            "inflight": self._inflight,
            "pairs_recorded": self._seq,
            "next": self._seq,
            "first": self._pairs[0][0] if self._pairs else self._seq + 1,
        }
        if after is not None:
            newer = []
            for seq, g, b in reversed(self._pairs):
                if seq <= after:
                    break
                newer.append([g, b])
            newer.reverse()
            doc["pairs"] = newer
        return doc

    async def close(self) -> None:
        """Stop mirroring: drop the mirrors in flight and close the connection pool."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()


def _plain(value: float | str | None) -> float | str | None:
    """A JSON-safe prediction: non-finite numbers become ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
