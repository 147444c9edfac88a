"""Rollouts that cannot interfere or get stuck, on real endpoints with real rollout processes.

Each rollout runs as ``mlops endpoint update`` in its own process, as a user would start it;
"killed" is SIGKILL. Traffic runs throughout, and every request must be answered 2xx by blue
or green, judged from the client's side whatever bucket the answer fell in.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli.endpoints import endpoint_app
from flows.traffic import TrafficGenerator
from mlops.backends.local.gateway import (
    EndpointClient,
    VariantSpec,
    create_endpoint,
    delete_endpoint,
)
from mlops.backends.local.gateway.manager import describe_endpoint
from mlops.errors import EndpointError, EndpointNotFoundError, EndpointStateError, RolloutError
from mlops.rollout.lock import lock_holder, read_note
from mlops.settings import Settings
from mlops.tracking import Tags, connect
from tests.conftest import BIN

pytestmark = pytest.mark.slow

# Judged on errors and model signal; the latency alarm must not depend on this machine's speed.
_ENV = {"MLOPS_ROLLOUT__ALARMS__MAX_LATENCY_P99_MS": "10000"}


@pytest.fixture
def cli_env(ep_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of `mlops` here and in child processes: this test's store and dirs."""
    env = {
        "MLOPS_WORK_DIR": str(ep_settings.work_dir),
        "MLOPS_TRACKING_URI": ep_settings.effective_tracking_uri,
        **_ENV,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **env}


@pytest.fixture
def endpoint(ep_settings: Settings, taxi_ref: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh endpoint serving the taxi model as ``v1`` (blue), deleted afterwards."""
    words = request.node.name.removeprefix("test_").split("_")
    name = "rec-" + "".join(w[0] for w in words if w)  # short: tables show it whole
    create_endpoint(ep_settings, name, [VariantSpec("v1", taxi_ref)], capture=False)
    yield name
    with contextlib.suppress(EndpointNotFoundError):
        delete_endpoint(ep_settings, name, force=True)


def _green(ep_settings: Settings, endpoint: str, second_ref: str) -> tuple[str, str]:
    """The `--model NAME/VERSION` of the second model, and the variant name it gets."""
    model, version = second_ref.removeprefix("models:/").split("/")
    taken = {v.name for v in describe_endpoint(ep_settings, endpoint).variants}
    return f"{model}/{version}", (
        f"{model}-v{version}" if f"v{version}" in taken else f"v{version}"
    )


def _update(env: dict[str, str], endpoint: str, model: str, *options: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "mlops"), "endpoint", "update", endpoint, "--model", model, *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(what: str, check: Callable[[], bool], proc: subprocess.Popen, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            pytest.fail(f"the rollout exited ({proc.returncode}) before {what}:\n{_output(proc)}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} after {timeout:.0f} s:\n{_output(proc)}")
        time.sleep(0.2)


def _output(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        return "(still running)"
    return proc.stdout.read() if proc.stdout else ""


def _in_canary_bake(ep_settings: Settings, endpoint: str, green: str) -> Callable[[], bool]:
    def check() -> bool:
        note = read_note(ep_settings.endpoints_dir, endpoint)
        if note is None or note.phase != "shift" or note.share_index != 0:
            return False
        weights = {v.name: v.weight for v in describe_endpoint(ep_settings, endpoint).variants}
        return weights.get(green, 0.0) > 0

    return check


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _assert_all_answered_by(traffic: TrafficGenerator, *variants: str) -> None:
    """Every request got a 2xx from one of ``variants``, whatever bucket it fell in."""
    assert traffic.sent > 0
    bad = traffic.not_answered_by(*variants)
    assert not bad, f"requests not answered 2xx by {variants}: {traffic.describe()}"


def _more_requests(traffic: TrafficGenerator, n: int = 10, timeout: float = 60) -> None:
    """Wait until ``n`` more requests were answered (traffic after a change, judged later)."""
    target = traffic.sent + n
    deadline = time.monotonic() + timeout
    while traffic.sent < target:
        assert time.monotonic() < deadline, f"traffic stalled: {traffic.describe()}"
        time.sleep(0.05)


def _until(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"no {what} after {timeout:.0f} s"
        time.sleep(0.05)


def _cli(*args: str) -> str:
    result = CliRunner().invoke(endpoint_app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def _production(ep_settings: Settings, endpoint: str) -> list[tuple[str, float]]:
    state = describe_endpoint(ep_settings, endpoint)
    return [(v.name, v.weight) for v in state.variants if not v.shadow]


def test_a_second_update_is_refused_at_once_and_the_first_completes(
    ep_settings: Settings,
    endpoint: str,
    second_ref: str,
    csv_rows: list[bytes],
    cli_env: dict[str, str],
) -> None:
    model, green = _green(ep_settings, endpoint, second_ref)
    url = describe_endpoint(ep_settings, endpoint).url
    with TrafficGenerator(EndpointClient(url), csv_rows, rate=20) as traffic:
        first = _update(
            cli_env, endpoint, model, "--canary-size", "20", "--bake", "4",
            "--termination-wait", "0",
        )  # fmt: skip
        _wait_for(
            "a rollout holding the lock",
            lambda: read_note(ep_settings.endpoints_dir, endpoint) is not None,
            first,
        )
        # refused at once, naming the first (below), not let in after the first one's end
        with pytest.raises(RolloutError) as refused:
            CliRunner().invoke(
                endpoint_app,
                ["update", endpoint, "--model", model, "--bake", "0"],
                catch_exceptions=False,
            )
        output, _ = first.communicate(timeout=300)
        _more_requests(traffic)  # traffic after the end, on green alone
    message = str(refused.value)
    subject = model.replace("/", " v")
    assert message.startswith(f"endpoint {endpoint!r} is busy: a rollout of {subject} (pid")
    assert f"(pid {first.pid}, " in message and "`mlops endpoint update" in message
    assert " since 20" in message
    for command in ("describe", "rollback", "resume"):
        assert f"`mlops endpoint {command} {endpoint}`" in message
    assert first.returncode == 0, output
    assert f"rollout {endpoint} v1 → {green}: completed" in " ".join(output.split())
    assert _production(ep_settings, endpoint) == [(green, 100.0)]
    _assert_all_answered_by(traffic, "v1", green)
    assert read_note(ep_settings.endpoints_dir, endpoint) is None
    assert lock_holder(ep_settings.endpoints_dir, endpoint) is None
    run_id = output.split(" run ")[-1].split()[0]
    run = connect(ep_settings).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[Tags.ROLLOUT_OUTCOME] == "completed"
    assert run.data.params["green_variant"] == green


def test_a_killed_rollout_is_shown_rolled_back_and_resumed(
    ep_settings: Settings,
    endpoint: str,
    second_ref: str,
    csv_rows: list[bytes],
    cli_env: dict[str, str],
) -> None:
    model, green = _green(ep_settings, endpoint, second_ref)
    client = connect(ep_settings)
    url = describe_endpoint(ep_settings, endpoint).url
    with TrafficGenerator(EndpointClient(url), csv_rows, rate=20) as traffic:
        # 1. killed with SIGKILL in the middle of its canary bake
        killed = _update(cli_env, endpoint, model, "--bake", "30", "--termination-wait", "0")
        _wait_for("the canary step", _in_canary_bake(ep_settings, endpoint, green), killed)
        with pytest.raises(RolloutError, match=rf"is busy: a rollout .*pid {killed.pid}"):
            _cli("rollback", endpoint)  # refused while its process lives
        _until("request answered by green", lambda: traffic.answered(green) > 0)
        _kill(killed)
        note = read_note(ep_settings.endpoints_dir, endpoint)
        assert note is not None and note.record_run_id
        described = _cli("describe", endpoint)
        assert (
            f"rollout interrupted: v1 → {green} at step 3 (shift 10% of traffic to {green}), "
            f"traffic 90/10, record run {note.record_run_id}"
        ) in described
        assert f"mlops endpoint rollback {endpoint}" in described
        as_json = json.loads(
            CliRunner().invoke(endpoint_app, ["describe", endpoint, "--json"]).output
        )
        assert as_json["rollout"]["interrupted"] is True and as_json["rollout"]["green"] == green
        record = client.get_run(note.record_run_id)
        assert record.info.status == "RUNNING"
        assert record.data.tags[Tags.ROLLOUT_OUTCOME] == "running"
        assert record.data.tags[Tags.ROLLOUT_STEP] == f"shift 10% of traffic to {green}"
        assert "green_requests" in record.data.metrics  # alarm points logged as they came
        with pytest.raises(RolloutError, match=r"has an interrupted rollout.*rollback.*resume"):
            _cli("update", endpoint, "--model", model)

        # 2. rolled back: all traffic on blue, green removed, record marked
        rolled_back = _cli("rollback", endpoint)
        assert f"{endpoint}: all traffic back on v1; removed {green}" in rolled_back
        assert _production(ep_settings, endpoint) == [("v1", 100.0)]
        assert read_note(ep_settings.endpoints_dir, endpoint) is None
        assert "rollout" not in _cli("describe", endpoint)
        record = client.get_run(note.record_run_id)
        assert record.info.status == "KILLED"
        assert record.data.tags[Tags.ROLLOUT_OUTCOME] == "interrupted"
        assert record.data.tags[Tags.ROLLOUT_RECOVERY] == "rolled_back"
        assert f"pid {killed.pid}" in record.data.tags[Tags.ROLLOUT_REASON]
        _more_requests(traffic, 20)  # traffic after the rollback, on blue alone
        after_rollback = traffic.tally()

        # 3. killed again, then resumed: completes from its step with its policy
        again = _update(cli_env, endpoint, model, "--bake", "6", "--termination-wait", "0")
        _wait_for("the canary step", _in_canary_bake(ep_settings, endpoint, green), again)
        _kill(again)
        interrupted = read_note(ep_settings.endpoints_dir, endpoint)
        assert interrupted is not None and interrupted.record_run_id
        resumed = _cli("resume", endpoint)
        _more_requests(traffic)  # traffic after the end, on green alone
    assert f"rollout {endpoint} v1 → {green}: completed" in resumed
    assert "resumed in its shift phase" in resumed
    assert _production(ep_settings, endpoint) == [(green, 100.0)]
    assert read_note(ep_settings.endpoints_dir, endpoint) is None
    _assert_all_answered_by(traffic, "v1", green)
    assert after_rollback.get(green), "green served traffic before the rollback"
    old = client.get_run(interrupted.record_run_id)
    assert old.info.status == "KILLED"
    assert old.data.tags[Tags.ROLLOUT_RECOVERY] == "resumed"
    new_id = old.data.tags[Tags.ROLLOUT_RESUMED_BY]
    new = client.get_run(new_id)
    assert new.info.status == "FINISHED"
    assert new.data.tags[Tags.ROLLOUT_OUTCOME] == "completed"
    assert new.data.tags[Tags.ROLLOUT_RESUMED_FROM] == interrupted.record_run_id
    assert new.data.params["wait_interval_s"] == "6.0"  # the recorded policy, not the settings


def test_a_damaged_state_file(
    ep_settings: Settings, endpoint: str, cli_env: dict[str, str]
) -> None:
    state = describe_endpoint(ep_settings, endpoint)
    folder = ep_settings.endpoints_dir / endpoint
    pids = [state.gateway_pid, *(v.pid for v in state.variants)]
    assert all(pids)

    # damaged, with a good backup: read from the backup
    (folder / "endpoint.json").write_bytes(b"\xff\xfe garbage")
    assert describe_endpoint(ep_settings, endpoint).status == "InService"
    assert [e["name"] for e in json.loads(_cli("list", "--json"))] == [endpoint]

    # damaged, and so is the backup: a clear error, no traceback; list shows it damaged
    (folder / "endpoint.json.bak").write_bytes(b'{"name": "cut sh')
    described = subprocess.run(
        [str(BIN / "mlops"), "endpoint", "describe", endpoint],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert described.returncode == 1
    assert "Traceback" not in described.stdout + described.stderr
    said = " ".join(described.stderr.split())
    assert f"of endpoint '{endpoint}' is damaged (not UTF-8: byte 0xff at offset 0)" in said
    assert f"mlops endpoint delete {endpoint} --force" in said
    listed = _cli("list")
    assert endpoint in listed and "Damaged" in listed and "no endpoints" not in listed
    [row] = json.loads(_cli("list", "--json"))
    assert row["name"] == endpoint and row["status"] == "Damaged" and "--force" in row["error"]
    with pytest.raises(EndpointStateError, match="--force"):
        CliRunner().invoke(endpoint_app, ["delete", endpoint], catch_exceptions=False)

    # delete --force stops what is found running for it and removes the folder
    assert f"deleted endpoint {endpoint}" in _cli("delete", endpoint, "--force")
    assert not folder.exists()
    assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in pids), pids
    with pytest.raises(EndpointError):  # nothing listens there any more
        EndpointClient(state.url, timeout=2).invoke(b"1,2,3\n")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True
