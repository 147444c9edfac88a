"""The traffic generator's tally: every request that was not a 2xx from the named variants
counts, whether a variant, the gateway itself or nobody answered it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flows.traffic import TrafficGenerator
from mlops.backends.local.gateway.client import INVOKED_HEADER, EndpointClient
from tests.conftest import _free_port

# body → (status, variant header); like a gateway: its own errors name no variant
ANSWERS = {
    b"blue\n": (200, "blue"),
    b"green\n": (200, "green"),
    b"green-error\n": (424, "green"),
    b"gateway-busy\n": (503, None),
    b"other\n": (200, "v9"),
}


class _Gateway(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status, variant = ANSWERS[body]
        self.send_response(status)
        if variant:
            self.send_header(INVOKED_HEADER, variant)
        self.send_header("Content-Length", "1")
        self.end_headers()
        self.wfile.write(b"1")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _send_once(url: str, rows: list[bytes]) -> TrafficGenerator:
    with TrafficGenerator(EndpointClient(url, timeout=5), rows, rate=500, repeat=False) as t:
        t.wait(timeout=30)
    assert t.sent == len(rows)
    return t


def test_all_2xx_from_blue_and_green_is_clean(gateway: str) -> None:
    traffic = _send_once(gateway, [b"blue\n", b"green\n", b"blue\n"])
    assert traffic.all_failures() == 0 and traffic.non_2xx() == {}
    assert traffic.not_answered_by("blue", "green") == {}
    assert traffic.tally() == {"blue": {200: 2}, "green": {200: 1}}


def test_the_gateways_own_errors_and_other_variants_count(gateway: str) -> None:
    traffic = _send_once(
        gateway, [b"blue\n", b"green-error\n", b"gateway-busy\n", b"gateway-busy\n", b"other\n"]
    )
    # what failures(variant) sees: the gateway's 503s name no variant, so it misses them
    assert traffic.failures("blue") == 0
    assert traffic.non_2xx() == {"green": {424: 1}, "(none)": {503: 2}}
    assert traffic.all_failures() == 3
    assert traffic.not_answered_by("blue", "green") == {
        "green": {424: 1},
        "(none)": {503: 2},
        "v9": {200: 1},
    }


def test_requests_nobody_answered_count() -> None:
    traffic = _send_once(f"http://127.0.0.1:{_free_port()}", [b"blue\n", b"blue\n"])
    assert traffic.non_2xx() == {"(unreachable)": {0: 2}}
    assert traffic.all_failures() == 2
    assert traffic.errors and "(unreachable)" in traffic.describe()
