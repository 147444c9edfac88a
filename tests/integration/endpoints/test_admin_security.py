"""The admin API answers only the endpoint's owner: the three attacks of issue 8 are refused.

(a) ``POST /admin/variants`` with a model folder whose ``loader_module`` is arbitrary code,
(b) ``PUT /admin/weights`` without the token, (c) ``POST /admin/shutdown`` as ``text/plain``
with a foreign ``Origin``. Real gateway and model server; the endpoint lives in a folder
other users can traverse, so only the token file's own mode keeps them out of it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlops.backends.local.gateway import (
    EndpointClient,
    EndpointState,
    VariantSpec,
    create_endpoint,
    delete_endpoint,
    start_endpoint,
    stop_endpoint,
)
from mlops.backends.local.gateway.admin_auth import token_path
from mlops.backends.local.gateway.model_policy import allow_code, allow_folder
from mlops.backends.local.gateway.state import endpoint_dir, state_path
from mlops.errors import EndpointError
from mlops.settings import Settings
from tests.conftest import make_settings

pytestmark = pytest.mark.slow

NAME = "sec-ep"
FOREIGN = "http://attacker.example"
NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]


@pytest.fixture(scope="module")
def sec_settings(trained_taxi: tuple[Settings, str]) -> Iterator[Settings]:
    """Settings whose work dir others may traverse (pytest's temp dirs are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="mlops-admin-security-"))
    os.chmod(root, 0o755)
    try:
        yield make_settings(root, tracking_uri=trained_taxi[0].effective_tracking_uri)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def endpoint(sec_settings: Settings, taxi_ref: str) -> Iterator[EndpointState]:
    state = create_endpoint(sec_settings, NAME, [VariantSpec("v1", taxi_ref)], capture=False)
    yield state
    delete_endpoint(sec_settings, NAME)


@pytest.fixture(scope="module")
def owner(sec_settings: Settings, endpoint: EndpointState) -> Iterator[EndpointClient]:
    with EndpointClient.for_endpoint(sec_settings, NAME) as client:
        yield client


@pytest.fixture
def admin(endpoint: EndpointState) -> Iterator[httpx.Client]:
    """A plain HTTP client of the admin port that sends no token."""
    assert endpoint.admin_url is not None
    with httpx.Client(base_url=endpoint.admin_url, trust_env=False, timeout=30) as client:
        yield client


@pytest.fixture
def code_model(tmp_path: Path) -> tuple[Path, Path]:
    """A model folder whose loader_module is code that writes a marker file when imported."""
    marker = tmp_path / "marker"
    folder = tmp_path / "evil-model"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "evil_loader.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n\n"
        "def _load_pyfunc(path):\n    raise RuntimeError('no model here')\n"
    )
    (folder / "MLmodel").write_text(
        "flavors:\n"
        "  python_function:\n"
        "    loader_module: evil_loader\n"
        "    code: code\n"
        "signature:\n"
        '  inputs: \'[{"type": "double", "name": "x"}]\'\n'
        '  outputs: \'[{"type": "double"}]\'\n'
    )
    return folder, marker


def _answers(endpoint: EndpointState, row: bytes) -> bool:
    resp = httpx.post(
        f"{endpoint.url}/invocations",
        content=row,
        headers={"Content-Type": "text/csv"},
        trust_env=False,
    )
    return resp.status_code == 200 and resp.headers["X-Amzn-Invoked-Production-Variant"] == "v1"


def test_token_file_is_owner_only(sec_settings: Settings, endpoint: EndpointState) -> None:
    path = token_path(endpoint_dir(sec_settings.endpoints_dir, NAME))
    info = os.lstat(path)
    assert stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert len(path.read_text()) >= 32
    saved = json.loads(state_path(sec_settings.endpoints_dir, NAME).read_text())
    assert saved["admin_port"] == endpoint.admin_port and endpoint.admin_port != endpoint.port
    assert path.read_text() not in state_path(sec_settings.endpoints_dir, NAME).read_text()


def test_right_token_works(owner: EndpointClient, admin: httpx.Client) -> None:
    assert [v.name for v in owner.state().variants] == ["v1"]
    assert owner.set_weights({"v1": 1}) == {"v1": 1.0}
    token = owner._admin_http.headers["Authorization"]  # type: ignore[union-attr]
    assert admin.get("/admin/state", headers={"Authorization": token}).status_code == 200
    assert admin.get("/admin/state").status_code == 401
    wrong = admin.get("/admin/state", headers={"Authorization": "Bearer " + "x" * 43})
    assert wrong.status_code == 401 and "www-authenticate" in wrong.headers


def test_admin_api_is_not_on_the_invocations_port(
    endpoint: EndpointState, owner: EndpointClient, csv_rows: list[bytes]
) -> None:
    token = owner._admin_http.headers["Authorization"]  # type: ignore[union-attr]
    with httpx.Client(base_url=endpoint.url, trust_env=False) as invocations:
        assert invocations.get("/admin/state", headers={"Authorization": token}).status_code == 404
        shutdown = invocations.post("/admin/shutdown", json={}, headers={"Authorization": token})
        assert shutdown.status_code == 404
    assert _answers(endpoint, csv_rows[0])


def test_a_code_model_folder_is_never_loaded(
    sec_settings: Settings,
    owner: EndpointClient,
    admin: httpx.Client,
    code_model: tuple[Path, Path],
) -> None:
    folder, marker = code_model
    body = {"name": "evil", "model_dir": str(folder), "weight": 100}
    assert admin.post("/admin/variants", json=body).status_code == 401  # no token
    with pytest.raises(EndpointError, match="403.*not a folder the owner"):
        owner.add_variant("evil", model_dir=str(folder), weight=100)  # token, folder not chosen
    allow_folder(sec_settings, NAME, folder)  # the owner chose it, without --allow-code
    with pytest.raises(EndpointError, match="422.*runs code.*loader_module 'evil_loader'"):
        owner.add_variant("evil", model_dir=str(folder), weight=100)
    assert not marker.exists()
    assert [(v.name, v.weight) for v in owner.state().variants] == [("v1", 1.0)]


def test_b_weights_without_token_are_refused(
    endpoint: EndpointState, owner: EndpointClient, admin: httpx.Client, csv_rows: list[bytes]
) -> None:
    refused = admin.put("/admin/weights", json={"weights": {"v1": 0}})
    assert refused.status_code == 401 and "token" in refused.json()["error"]
    assert [(v.name, v.weight) for v in owner.state().variants] == [("v1", 1.0)]
    assert _answers(endpoint, csv_rows[0])


def test_c_simple_cross_origin_shutdown_is_refused(
    endpoint: EndpointState, owner: EndpointClient, admin: httpx.Client, csv_rows: list[bytes]
) -> None:
    token = owner._admin_http.headers["Authorization"]  # type: ignore[union-attr]
    page = {"Content-Type": "text/plain", "Origin": FOREIGN}
    assert admin.post("/admin/shutdown", content=b"{}", headers=page).status_code == 403
    with_token = {**page, "Authorization": token}
    assert admin.post("/admin/shutdown", content=b"{}", headers=with_token).status_code == 403
    as_json = {"Origin": FOREIGN, "Authorization": token}
    assert admin.post("/admin/shutdown", json={}, headers=as_json).status_code == 403
    plain = {"Content-Type": "text/plain", "Authorization": token}
    assert admin.post("/admin/shutdown", content=b"{}", headers=plain).status_code == 415
    fetched = {"Sec-Fetch-Site": "cross-site", "Authorization": token}
    assert admin.get("/admin/state", headers=fetched).status_code == 403
    rebound = {"Host": f"attacker.example:{endpoint.admin_port}", "Authorization": token}
    assert admin.get("/admin/state", headers=rebound).status_code == 403
    for refused in (admin.get("/admin/state"), admin.post("/admin/shutdown", headers=page)):
        assert not any(h.startswith("access-control-") for h in refused.headers)
    assert owner.ping() and owner.state().status == "InService"
    assert _answers(endpoint, csv_rows[0])


@pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("setpriv") and shutil.which("curl")),
    reason="needs root, setpriv and curl to act as another user",
)
def test_another_user_cannot_read_the_token_or_use_the_admin_api(
    sec_settings: Settings, endpoint: EndpointState, owner: EndpointClient, csv_rows: list[bytes]
) -> None:
    folder = endpoint_dir(sec_settings.endpoints_dir, NAME)
    listing = subprocess.run([*NOBODY, "ls", str(folder)], capture_output=True, text=True)
    assert listing.returncode == 0 and "admin.token" in listing.stdout  # only the mode stops it
    read = subprocess.run([*NOBODY, "cat", str(token_path(folder))], capture_output=True, text=True)
    assert read.returncode != 0 and "Permission denied" in read.stderr
    url = f"{endpoint.admin_url}/admin"
    attempts = {
        "weights": ["-X", "PUT", "-H", "Content-Type: application/json",
                    "-d", '{"weights": {"v1": 0}}', f"{url}/weights"],
        "variant": ["-X", "POST", "-H", "Content-Type: application/json",
                    "-d", json.dumps({"name": "evil", "model_ref": "models:/taxi/1"}),
                    f"{url}/variants"],
        "shutdown": ["-X", "POST", "-H", "Content-Type: application/json", "-d", "{}",
                     f"{url}/shutdown"],
    }  # fmt: skip
    for what, args in attempts.items():
        done = subprocess.run(
            [*NOBODY, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "*",
             *args],
            capture_output=True,
            text=True,
        )  # fmt: skip
        assert done.stdout == "401", (what, done.stdout, done.stderr)
    assert [(v.name, v.weight) for v in owner.state().variants] == [("v1", 1.0)]
    assert _answers(endpoint, csv_rows[0])


def test_old_state_without_token_or_admin_port_starts(
    sec_settings: Settings, endpoint: EndpointState, csv_rows: list[bytes]
) -> None:
    """An endpoint saved before admin ports and tokens: `start` makes both."""
    stop_endpoint(sec_settings, NAME)
    folder = endpoint_dir(sec_settings.endpoints_dir, NAME)
    old_token = token_path(folder).read_text()
    token_path(folder).unlink()
    for path in (state_path(sec_settings.endpoints_dir, NAME), folder / "endpoint.json.bak"):
        if path.exists():
            saved = json.loads(path.read_text())
            saved.pop("admin_port")
            path.write_text(json.dumps(saved))
    started = start_endpoint(sec_settings, NAME)
    assert started.status == "InService" and started.admin_port not in (None, started.port)
    assert stat.S_IMODE(os.lstat(token_path(folder)).st_mode) == 0o600
    assert token_path(folder).read_text() != old_token
    with EndpointClient.for_endpoint(sec_settings, NAME) as client:
        assert [v.name for v in client.state().variants] == ["v1"]
        assert client.invoke(csv_rows[0]).status == 200


def test_code_runs_only_when_the_owner_allows_it(
    sec_settings: Settings, code_model: tuple[Path, Path]
) -> None:
    """The control of (a): the same folder, once the owner allows code, does run its code."""
    folder, marker = code_model
    allow_folder(sec_settings, NAME, folder)
    allow_code(sec_settings, NAME)
    with EndpointClient.for_endpoint(sec_settings, NAME) as client:
        with pytest.raises(EndpointError, match="failed to start"):
            client.add_variant("evil", model_dir=str(folder), weight=0)
        assert [v.name for v in client.state().variants] == ["v1"]
    assert marker.read_text() == "ran"
