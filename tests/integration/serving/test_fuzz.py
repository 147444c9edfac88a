"""Fuzzing a real server: whatever arrives, the answer is 200 or a 4xx with a JSON message."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from mlops.settings import Settings
from tests.integration.serving import Response, Server, start_server

pytestmark = pytest.mark.slow

FEATURES = ["duration_minutes", "passenger_count", "trip_distance"]
LIMIT_MB = 0.05
LIMIT = int(LIMIT_MB * 1024 * 1024)
FUZZ = hsettings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
content_types = st.one_of(
    st.sampled_from(
        [
            "text/csv",
            "application/json",
            "text/csv; charset=utf-8",
            "application/json; charset=latin-1",
            "text/csv; charset=utf-16",
            "text/csv; charset=bogus",
            "text/plain",
            "application/x-npy",
            "multipart/form-data",
            "",
        ]
    ),
    printable,
)
accepts = st.one_of(
    st.none(),
    st.sampled_from(["*/*", "text/csv", "application/json", "image/png", "text/*;q=0", ""]),
    printable,
)
tokens = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(
        [
            "",
            " ",
            "nan",
            "NaN",
            "inf",
            "-Infinity",
            "1e999",
            "-1e-999",
            "1_0",
            "abc",
            '"',
            '"1"',
            "0x1F",
            "١٢",
            "\t3",
            *FEATURES,
        ]
    ),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.text(max_size=10),
    st.sampled_from(FEATURES),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(
            st.one_of(st.sampled_from(FEATURES), st.text(max_size=8)), inner, max_size=5
        ),
    ),
    max_leaves=30,
)
json_forms = st.one_of(
    json_values,
    st.builds(lambda rows: {"instances": rows}, json_values),
    st.builds(lambda rows: {"inputs": rows}, json_values),
    st.builds(lambda rows: {"dataframe_records": rows}, json_values),
    st.builds(
        lambda c, d: {"dataframe_split": {"columns": c, "data": d}}, json_values, json_values
    ),
    st.lists(st.fixed_dictionaries({f: json_scalars for f in FEATURES}), min_size=1, max_size=5),
    st.lists(st.lists(json_scalars, min_size=2, max_size=4), min_size=1, max_size=5),
)


@pytest.fixture(scope="module")
def server(
    trained_taxi: tuple[Settings, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    settings, version = trained_taxi
    args = ["--model", f"taxi/{version}", "--workers", "1", "--max-payload-mb", str(LIMIT_MB)]
    with start_server(args, tmp_path_factory.mktemp("fuzz-server"), settings=settings) as srv:
        yield srv


def check(resp: Response) -> None:
    """200 with predictions, or a 4xx whose JSON body says what was wrong."""
    assert resp.status == 200 or 400 <= resp.status < 500, (resp.status, resp.body[:300])
    if resp.status == 200:
        if resp.headers["content-type"].startswith("application/json"):
            predictions = resp.json()["predictions"]
            assert all(isinstance(p, float) and math.isfinite(p) for p in predictions)
        else:
            assert all(math.isfinite(float(v)) for v in resp.body.decode().splitlines())
        return
    assert resp.headers["content-type"] == "application/json", resp.headers
    message = resp.json()["error"]
    assert isinstance(message, str) and len(message) > 10
    assert "Traceback" not in message


@FUZZ
@given(body=st.binary(max_size=2000), content_type=content_types, accept=accepts)
def test_random_bytes(server: Server, body: bytes, content_type: str, accept: str | None) -> None:
    check(server.invoke(body, content_type, accept))


@FUZZ
@given(
    lines=st.lists(st.lists(tokens, min_size=0, max_size=5), min_size=0, max_size=6),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    accept=accepts,
)
def test_csv_like(server: Server, lines: list[list[str]], newline: str, accept: str | None) -> None:
    body = newline.join(",".join(fields) for fields in lines).encode()
    check(server.invoke(body, "text/csv", accept))


@FUZZ
@given(doc=json_forms, accept=accepts)
def test_json_like(server: Server, doc: object, accept: str | None) -> None:
    body = json.dumps(doc, allow_nan=True).encode()
    check(server.invoke(body, "application/json", accept))


@FUZZ
@given(
    size=st.integers(min_value=LIMIT - 50, max_value=LIMIT * 3),
    content_type=st.sampled_from(["text/csv", "application/json", "text/plain"]),
    chunked=st.booleans(),
)
def test_bodies_around_the_limit(
    server: Server, size: int, content_type: str, chunked: bool
) -> None:
    row = b"12,1,2.5\n"
    body = (row * (size // len(row) + 1))[:size]
    if chunked:
        resp = server.request(
            "POST",
            "/invocations",
            iter([body[: size // 2], body[size // 2 :]]),
            {"Content-Type": content_type},
            chunked=True,
        )
    else:
        resp = server.invoke(body, content_type)
    check(resp)
    if size > LIMIT and content_type != "text/plain":
        assert resp.status == 413


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=st.one_of(
        st.sampled_from(["/ping", "/invocations", "/execution-parameters", "/", "/ping/"]),
        printable.map(lambda p: "/" + p.replace(" ", "%20").replace("#", "").replace("?", "")),
    ),
)
def test_random_routes(server: Server, method: str, path: str) -> None:
    resp = server.request(
        method, path, b"1,2,3" if method in ("POST", "PUT") else None, {"Content-Type": "text/csv"}
    )
    assert resp.status < 500, (method, path, resp.status, resp.body)
    if method != "HEAD" and resp.status >= 400:
        assert resp.json()["error"]


def test_still_healthy_after_the_fuzz(server: Server, tmp_path: Path) -> None:
    assert server.request("GET", "/ping").status == 200
    assert server.invoke(b"12,1,2.5").status == 200
    assert server.proc.poll() is None
    assert "Traceback" not in server.log.read_text()
