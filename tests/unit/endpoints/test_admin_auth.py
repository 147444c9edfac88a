"""The admin API's request checks and its token file, without a server."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mlops.backends.local.gateway.admin_auth import (
    check_admin_request,
    ensure_token,
    read_token,
    token_path,
)
from mlops.backends.local.gateway.asgi import HttpError
from mlops.errors import EndpointError

TOKEN = "t" * 43
PORT = 4321


def _scope(method: str = "GET", **headers: str) -> dict[str, object]:
    base = {"host": f"127.0.0.1:{PORT}", "authorization": f"Bearer {TOKEN}"}
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    return {
        "method": method,
        "headers": [(k.encode(), v.encode()) for k, v in base.items() if v is not None],
    }


def _status(scope: dict[str, object]) -> int:
    try:
        check_admin_request(scope, token=TOKEN, port=PORT)
    except HttpError as exc:
        return exc.status
    return 200


def test_owner_request_passes() -> None:
    assert _status(_scope()) == 200
    assert _status(_scope("POST", content_type="application/json; charset=utf-8")) == 200
    assert _status(_scope("DELETE")) == 200  # no body, no content type needed
    assert _status(_scope(host=f"localhost:{PORT}")) == 200


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"origin": "http://attacker.example"}, 403),
        ({"origin": "null"}, 403),
        ({"origin": f"http://127.0.0.1:{PORT}"}, 403),  # any Origin: only browsers send it
        ({"sec_fetch_site": "cross-site"}, 403),
        ({"sec_fetch_site": "same-origin"}, 403),
        ({"host": f"attacker.example:{PORT}"}, 403),
        ({"host": "127.0.0.1:1"}, 403),
        ({"authorization": ""}, 401),
        ({"authorization": TOKEN}, 401),  # no scheme
        ({"authorization": "Bearer " + "u" * 43}, 401),
        ({"authorization": "Bearer " + TOKEN[:-1]}, 401),
        ({"authorization": "Basic " + TOKEN}, 401),
    ],
)
def test_refusals(headers: dict[str, str], status: int) -> None:
    assert _status(_scope(**headers)) == status


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""],
)
def test_body_must_be_json(method: str, content_type: str) -> None:
    assert _status(_scope(method, content_type=content_type)) == 415


def test_a_body_on_any_method_must_be_json() -> None:
    assert _status(_scope("DELETE", content_length="2", content_type="text/plain")) == 415
    assert _status(_scope("GET", transfer_encoding="chunked")) == 415


def test_a_refused_origin_wins_over_a_missing_token() -> None:
    scope = _scope("POST", origin="http://attacker.example", authorization="", content_type="")
    assert _status(scope) == 403


def test_token_file_is_created_owner_only(tmp_path: Path) -> None:
    old = os.umask(0)  # whatever the umask, the file is 0600
    try:
        token = ensure_token(tmp_path)
    finally:
        os.umask(old)
    path = token_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 32 and path.read_text() == token
    assert ensure_token(tmp_path) == token == read_token(tmp_path)  # kept, not replaced


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    ensure_token(tmp_path)
    token_path(tmp_path).chmod(0o644)
    with pytest.raises(EndpointError, match="can be read by others.*mode 0644.*remove"):
        ensure_token(tmp_path)


def test_token_link_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("x" * 43)
    target.chmod(0o600)
    token_path(tmp_path).symlink_to(target)
    with pytest.raises(EndpointError, match="not a plain file"):
        ensure_token(tmp_path)


def test_read_token_of_missing_file_is_none(tmp_path: Path) -> None:
    assert read_token(tmp_path) is None
