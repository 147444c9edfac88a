"""The gateway's pairing of green's requests with blue's answers, against a mock blue."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx

from mlops.backends.local.gateway.pairing import MIRROR_HEADER, Pairing, PairingConfig, mirror_token
from mlops.backends.local.gateway.state import VariantState
from mlops.backends.local.gateway.variants import Variant

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def _variants(blue_status: str = "InService") -> dict[str, Variant]:
    return {
        name: Variant(VariantState(name=name, model_dir=f"/m/{name}", port=port, status=status))
        for name, port, status in (("v1", 9001, blue_status), ("v2", 9002, "InService"))
    }


def _run(
    handler: Handler,
    offers: list[tuple[str, bytes, bytes]],
    *,
    variants: dict[str, Variant] | None = None,
    **config: float,
) -> tuple[Pairing, list[httpx.Request]]:
    """Offer ``(variant, rows, green's answer)`` each, let the copies finish, close."""
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return await handler(request)

    async def main() -> Pairing:
        pairing = Pairing(
            PairingConfig(green="v2", blue="v1", **config),  # type: ignore[arg-type]
            variants or _variants(),
            "secret",
            transport=httpx.MockTransport(record),
        )
        headers = {"content-type": "text/csv", "x-amzn-sagemaker-inference-id": "id-1"}
        for variant, rows, answer in offers:
            pairing.offer(variant, rows, headers, answer, "text/csv; charset=utf-8")
        for _ in range(100):
            await asyncio.sleep(0.01)
            if not pairing.summary()["inflight"]:
                break
        await pairing.close()
        return pairing

    return asyncio.run(main()), seen


async def _times_two(request: httpx.Request) -> httpx.Response:
    rows = request.content.decode().splitlines()
    answer = "".join(f"{2 * float(r.split(',')[0])}\n" for r in rows)
    return httpx.Response(200, text=answer, headers={"content-type": "text/csv"})


def test_green_answers_are_paired_with_blue_answers_row_by_row() -> None:
    pairing, seen = _run(
        _times_two, [("v2", b"1,0\n2,0\n", b"2.1\n4.0\n"), ("v1", b"5,0\n", b"9\n")]
    )
    doc = pairing.summary(after=0)
    assert doc["pairs"] == [[2.1, 2.0], [4.0, 4.0]]  # only green's request was copied
    assert doc["counts"]["offered"] == doc["counts"]["paired_requests"] == 1
    assert doc["next"] == 2 and pairing.summary(after=1)["pairs"] == [[4.0, 4.0]]
    (request,) = seen
    assert request.url == "http://127.0.0.1:9001/invocations"  # blue's server
    assert request.headers[MIRROR_HEADER.decode()] == "secret"
    assert "x-amzn-sagemaker-inference-id" not in request.headers


def test_copies_are_capped_per_second() -> None:
    offers = [("v2", b"1,0\n", b"2\n")] * 20
    pairing, seen = _run(_times_two, offers, max_per_s=5)
    counts = pairing.summary()["counts"]
    assert counts["mirrored"] == len(seen) == 5  # a full bucket, then nothing this second
    assert counts["rate_limited"] == 15


def test_copies_in_flight_are_capped() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.3)  # what the real transport does after timeout_s
        raise httpx.ReadTimeout("blue is slow", request=request)

    pairing, _ = _run(slow, [("v2", b"1,0\n", b"2\n")] * 6, max_inflight=2)
    counts = pairing.summary()["counts"]
    assert (counts["mirrored"], counts["busy"]) == (2, 4)
    assert counts["timed_out"] == 2 and not pairing.summary(after=0)["pairs"]


def test_what_cannot_be_paired_is_counted() -> None:
    async def failing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": "boom"})

    async def short(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="1.0\n", headers={"content-type": "text/csv"})

    assert _run(failing, [("v2", b"1,0\n", b"2\n")])[0].counts["failed"] == 1
    assert _run(short, [("v2", b"1,0\n2,0\n", b"2\n4\n")])[0].counts["mismatched"] == 1
    stopped = _run(_times_two, [("v2", b"1,0\n", b"2\n")], variants=_variants("Failed"))[0]
    assert stopped.counts["blue_unavailable"] == 1 and stopped.counts["mirrored"] == 0


def test_mirror_token_is_private_to_the_admin_token() -> None:
    assert mirror_token("a" * 43) == mirror_token("a" * 43) != mirror_token("b" * 43)
    assert "a" * 10 not in mirror_token("a" * 43)
