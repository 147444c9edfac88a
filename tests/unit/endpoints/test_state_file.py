"""The endpoint state file: atomic writes, a backup of the last good state, damaged files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mlops.backends.local.gateway.state import (
    BACKUP_FILE,
    EndpointState,
    VariantState,
    damaged_endpoints,
    load_state,
    save_state,
    state_path,
)
from mlops.errors import EndpointNotFoundError, EndpointStateError


def _state(name: str = "taxi-prod", weight: float = 1.0) -> EndpointState:
    return EndpointState(
        name=name,
        port=8123,
        variants=[VariantState(name="v1", model_dir="/models/1", weight=weight)],
    )


def test_save_writes_the_file_and_a_backup_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = save_state(tmp_path, _state())
    save_state(tmp_path, _state(weight=3.0))
    assert path == state_path(tmp_path, "taxi-prod")
    assert sorted(p.name for p in path.parent.iterdir()) == ["endpoint.json", BACKUP_FILE]
    assert path.read_text() == (path.parent / BACKUP_FILE).read_text()
    assert load_state(tmp_path, "taxi-prod").variants[0].weight == 3.0
    # separate files: damaging one in place leaves the other whole
    assert path.stat().st_ino != (path.parent / BACKUP_FILE).stat().st_ino


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (b'{"name": "taxi-prod", "port": 81', "not JSON"),
        (b"\xff\xfe{\x00}", "not UTF-8: byte 0xff at offset 0"),
        (b'{"name": "taxi-prod", "port": 81, "caf\xe9": 1}', "not UTF-8: byte 0xe9"),
        (b'{"name": "taxi-prod"}', "not an endpoint state: port: Field required"),
        (b"", "not JSON"),
    ],
)
def test_damaged_file_is_read_from_its_backup_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: bytes, problem: str
) -> None:
    path = save_state(tmp_path, _state(weight=2.0))
    path.write_bytes(damage)
    with caplog.at_level(logging.WARNING, logger="mlops.backends.local.gateway.state"):
        state = load_state(tmp_path, "taxi-prod")
    assert state.variants[0].weight == 2.0
    assert problem in caplog.text and "using its backup endpoint.json.bak" in caplog.text
    assert damaged_endpoints(tmp_path) == {}
    save_state(tmp_path, state)  # the next write repairs the file
    assert load_state(tmp_path, "taxi-prod").variants[0].weight == 2.0
    assert path.read_bytes() != damage


def test_missing_file_with_a_backup_is_read_from_the_backup(tmp_path: Path) -> None:
    path = save_state(tmp_path, _state())
    path.unlink()
    assert load_state(tmp_path, "taxi-prod").port == 8123


def test_damaged_file_without_a_good_backup_says_how_to_recover(tmp_path: Path) -> None:
    path = save_state(tmp_path, _state())
    path.write_bytes(b"\x80\x81 not utf-8")
    (path.parent / BACKUP_FILE).unlink()
    with pytest.raises(EndpointStateError) as raised:
        load_state(tmp_path, "taxi-prod")
    message = str(raised.value)
    assert f"state file {path} of endpoint 'taxi-prod' is damaged (not UTF-8" in message
    assert "there is no backup of it" in message
    assert "mlops endpoint delete taxi-prod --force" in message
    (path.parent / BACKUP_FILE).write_text("{}")
    with pytest.raises(EndpointStateError, match=r"its backup endpoint.json.bak is damaged too"):
        load_state(tmp_path, "taxi-prod")
    damaged = damaged_endpoints(tmp_path)
    assert list(damaged) == ["taxi-prod"] and "--force" in damaged["taxi-prod"]


def test_unknown_endpoint_is_not_found_not_damaged(tmp_path: Path) -> None:
    save_state(tmp_path, _state("other"))
    with pytest.raises(EndpointNotFoundError, match="'nope' does not exist.*endpoints: other"):
        load_state(tmp_path, "nope")
    (tmp_path / "stray folder").mkdir()
    assert damaged_endpoints(tmp_path) == {}
    assert damaged_endpoints(tmp_path / "absent") == {}
