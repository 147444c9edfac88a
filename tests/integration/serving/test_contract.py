"""The SageMaker inference contract, against real server processes and registered models."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.pyfunc
import mlflow.xgboost
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from mlflow.models import infer_signature

from mlops.capture import read_capture
from mlops.settings import Settings
from mlops.stages.train import model_requirements
from mlops.tracking import connect, ensure_experiment
from tests.conftest import REPO
from tests.integration.serving import Server, server_env, start_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*Add type hints:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*input example was not provided:UserWarning"),
    pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer:UserWarning"),
]

# The reference SageMaker pipeline's order: its captured line `10.65,1,2.56` is 10.65 minutes.
FEATURES = ["duration_minutes", "passenger_count", "trip_distance"]


def taxi_rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "duration_minutes": np.round(rng.uniform(1, 80, n), 1),
            "passenger_count": rng.integers(1, 7, n),
            "trip_distance": np.round(rng.uniform(0.3, 25, n), 2),
        }
    )


def csv_of(frame: pd.DataFrame, header: bool = False) -> bytes:
    return frame.to_csv(index=False, header=header).encode()


def csv_values(body: bytes) -> np.ndarray:
    return np.array([float(line) for line in body.decode().splitlines()])


@pytest.fixture(scope="module")
def taxi(trained_taxi: tuple[Settings, str]) -> tuple[Settings, str, mlflow.pyfunc.PyFuncModel]:
    settings, version = trained_taxi
    connect(settings)
    return settings, version, mlflow.pyfunc.load_model(f"models:/taxi/{version}")


@pytest.fixture(scope="module")
def capture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("capture")


@pytest.fixture(scope="module")
def server(
    taxi: tuple[Settings, str, object],
    capture_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    settings, version, _ = taxi
    args = [
        "--model",
        f"models:/taxi/{version}",
        "--workers",
        "1",
        "--variant-name",
        "Blue",
        "--capture",
        str(capture_dir),
    ]
    with start_server(args, tmp_path_factory.mktemp("taxi-server"), settings=settings) as srv:
        yield srv


def expected(
    taxi: tuple[Settings, str, mlflow.pyfunc.PyFuncModel], frame: pd.DataFrame
) -> np.ndarray:
    return np.asarray(taxi[2].predict(frame), dtype=float)


# ------------------------------------------------------------------------ happy path


def test_ping(server: Server, taxi: tuple[Settings, str, object]) -> None:
    resp = server.request("GET", "/ping")
    assert resp.status == 200
    info = resp.json()
    assert (info["model"], info["version"], info["flavor"]) == ("taxi", taxi[1], "xgboost")
    assert info["features"] == FEATURES
    assert resp.headers["x-mlops-worker-pid"] == str(info["pid"])


def test_execution_parameters(server: Server) -> None:
    resp = server.request("GET", "/execution-parameters")
    assert resp.status == 200
    assert resp.json() == {
        "MaxConcurrentTransforms": 1,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }


def test_one_csv_row(server: Server, taxi: tuple[Settings, str, object]) -> None:
    frame = taxi_rows(1, seed=1)
    resp = server.invoke(csv_of(frame))
    assert resp.status == 200, resp.body
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    assert resp.headers["x-amzn-invoked-production-variant"] == "Blue"
    np.testing.assert_allclose(csv_values(resp.body), expected(taxi, frame), atol=1e-5)


def test_reference_capture_lines_get_the_reference_fares(server: Server) -> None:
    """The reference pipeline's rows (Feb 2018 green taxi, duration,passengers,distance):
    2.56 mi in 10.65 min cost about $12.72, 9.6 mi in 22.8 min about $35.8."""
    resp = server.invoke(b"10.65,1,2.56\n22.8,1,9.6\n")
    assert resp.status == 200, resp.body
    np.testing.assert_allclose(csv_values(resp.body), [12.72, 35.8], rtol=0.10)


def test_many_csv_rows_with_and_without_header(server: Server, taxi: tuple) -> None:
    frame = taxi_rows(200, seed=2)
    want = expected(taxi, frame)
    plain = server.invoke(csv_of(frame))
    assert plain.status == 200, plain.body
    np.testing.assert_allclose(csv_values(plain.body), want, atol=1e-5)
    shuffled = frame[["passenger_count", "trip_distance", "duration_minutes"]]
    headed = server.invoke(csv_of(shuffled, header=True), content_type="text/csv; charset=utf-8")
    assert headed.status == 200, headed.body
    np.testing.assert_allclose(csv_values(headed.body), want, atol=1e-5)


def test_missing_values(server: Server, taxi: tuple) -> None:
    frame = taxi_rows(3, seed=3)
    frame["trip_distance"] = np.nan
    body = b"\n".join(
        f"{r.duration_minutes},{int(r.passenger_count)},".encode() for r in frame.itertuples()
    )
    resp = server.invoke(body)
    assert resp.status == 200, resp.body
    np.testing.assert_allclose(csv_values(resp.body), expected(taxi, frame), atol=1e-5)
    records = [{**r, "trip_distance": None} for r in frame.to_dict(orient="records")]
    resp = server.invoke(json.dumps(records).encode(), "application/json")
    np.testing.assert_allclose(resp.json()["predictions"], expected(taxi, frame), atol=1e-5)


def _json_forms(frame: pd.DataFrame) -> list[object]:
    records = frame.to_dict(orient="records")
    values = frame.to_numpy().tolist()
    shuffled = frame[["trip_distance", "duration_minutes", "passenger_count"]]
    return [
        records,
        {"instances": values},
        {"instances": records},
        {"dataframe_split": json.loads(shuffled.to_json(orient="split"))},
        {"dataframe_records": records},
        {"inputs": values},
        {"inputs": {c: frame[c].tolist() for c in frame.columns}},
    ]


def test_every_json_form(server: Server, taxi: tuple) -> None:
    frame = taxi_rows(7, seed=4)
    want = expected(taxi, frame)
    for doc in _json_forms(frame):
        resp = server.invoke(json.dumps(doc).encode(), "application/json")
        assert resp.status == 200, (doc, resp.body)
        assert resp.headers["content-type"] == "application/json"
        np.testing.assert_allclose(resp.json()["predictions"], want, atol=1e-5)
    single = server.invoke(json.dumps(frame.iloc[0].to_dict()).encode(), "application/json")
    np.testing.assert_allclose(single.json()["predictions"], want[:1], atol=1e-5)


@pytest.mark.parametrize(
    ("content_type", "accept", "answer"),
    [
        ("text/csv", None, "text/csv; charset=utf-8"),
        ("text/csv", "*/*", "text/csv; charset=utf-8"),
        ("text/csv", "application/json", "application/json"),
        ("application/json", None, "application/json"),
        ("application/json", "*/*", "application/json"),
        ("application/json", "text/csv", "text/csv; charset=utf-8"),
    ],
)
def test_accept_picks_the_output(
    server: Server, taxi: tuple, content_type: str, accept: str | None, answer: str
) -> None:
    frame = taxi_rows(2, seed=5)
    body = csv_of(frame) if content_type == "text/csv" else frame.to_json(orient="records").encode()
    resp = server.invoke(body, content_type, accept)
    assert resp.status == 200, resp.body
    assert resp.headers["content-type"] == answer
    got = resp.json()["predictions"] if answer == "application/json" else csv_values(resp.body)
    np.testing.assert_allclose(got, expected(taxi, frame), atol=1e-5)


def test_answered_requests_are_captured(server: Server, capture_dir: Path) -> None:
    resp = server.invoke(b"12,2,3.5\n", headers={"X-Amzn-SageMaker-Inference-Id": "trip-42"})
    assert resp.status == 200
    server.invoke(b"12,2,x\n")  # a 400 is not captured
    deadline = time.monotonic() + 15
    mine: list[dict] = []
    while time.monotonic() < deadline and not mine:
        mine = [
            r
            for r in read_capture(str(capture_dir), "taxi", "Blue")
            if r["eventMetadata"].get("inferenceId") == "trip-42"
        ]
        time.sleep(0.2)
    assert len(mine) == 1
    data = mine[0]["captureData"]
    assert data["endpointInput"] == {
        "observedContentType": "text/csv",
        "mode": "INPUT",
        "data": "12,2,3.5\n",
        "encoding": "CSV",
    }
    assert data["endpointOutput"]["data"] == resp.body.decode()
    assert data["endpointOutput"]["observedContentType"] == "text/csv; charset=utf-8"
    assert not any(
        r["captureData"]["endpointInput"]["data"] == "12,2,x\n"
        for r in read_capture(str(capture_dir), "taxi", "Blue")
    )


# ---------------------------------------------------------------------------- errors


def _assert_error(resp: object, status: int, *fragments: str) -> None:
    assert resp.status == status, resp.body  # type: ignore[attr-defined]
    assert resp.headers["content-type"] == "application/json"  # type: ignore[attr-defined]
    message = resp.json()["error"]  # type: ignore[attr-defined]
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize(
    ("body", "content_type", "fragments"),
    [
        (b"1,2", "text/csv", ["line 1 has 2 fields", "duration_minutes, passenger_count"]),
        (b"1,2,x", "text/csv", ["'x' is not a number"]),
        (b"1,nan,3", "text/csv", ["not a finite number", "leave the field empty"]),
        (b"1,inf,3", "text/csv", ["not a finite number"]),
        (b"", "text/csv", ["empty"]),
        (b"a,b,c\n1,2,3", "text/csv", ["unknown column(s)"]),
        (b"{", "application/json", ["not valid JSON"]),
        (b"[1, 2, NaN]", "application/json", ["not a finite number"]),
        (b'{"rows": []}', "application/json", ["dataframe_split"]),
    ],
)
def test_invalid_input_is_400(
    server: Server, body: bytes, content_type: str, fragments: list[str]
) -> None:
    _assert_error(server.invoke(body, content_type), 400, *fragments)


def test_unsupported_accept_is_400(server: Server) -> None:
    _assert_error(server.invoke(b"1,2,3", accept="image/png"), 400, "Accept", "text/csv")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_unsupported_content_type_is_415(server: Server, content_type: str | None) -> None:
    _assert_error(server.invoke(b"1,2,3", content_type), 415, "text/csv or application/json")


def test_body_over_the_limit_is_413(server: Server) -> None:
    big = b"12,1,2.5\n" * (6 * 1024 * 1024 // 9 + 2)
    _assert_error(server.invoke(big), 413, "over the limit of 6 MB", "--max-payload-mb")
    chunks = [b"12,1,2.5\n" * 100_000] * 8  # streamed without Content-Length
    resp = server.request(
        "POST", "/invocations", iter(chunks), {"Content-Type": "text/csv"}, chunked=True
    )
    _assert_error(resp, 413, "over the limit")
    assert server.invoke(b"12,1,2.5").status == 200  # and the server is fine


def test_other_paths_and_methods(server: Server) -> None:
    _assert_error(server.request("GET", "/nope"), 404, "POST /invocations")
    resp = server.request("GET", "/invocations")
    _assert_error(resp, 405, "use POST /invocations")
    assert resp.headers["allow"] == "POST"
    _assert_error(server.request("POST", "/ping"), 405, "use GET /ping")


# ------------------------------------------------------- pyfunc: 503 while loading, 424

SLOW_MODEL = """
import os
import time

import mlflow
from mlflow.pyfunc import PythonModel


class Slow(PythonModel):
    def load_context(self, context):
        delay = float(os.environ.get("SLOW_MODEL_LOAD_S", "0"))
        first = os.environ.get("SLOW_MODEL_FIRST_FLAG")
        if first:  # the first worker to load is quick, the others take the delay
            try:
                os.close(os.open(first, os.O_CREAT | os.O_EXCL))
                delay = 0.2
            except FileExistsError:
                pass
        time.sleep(delay)

    def predict(self, context, model_input, params=None):
        if (model_input["x"] > 100).any():
            raise ValueError("x over 100 breaks this model")
        return model_input["x"] * 2 + model_input["y"]


mlflow.models.set_model(Slow())
"""


@pytest.fixture(scope="module")
def slow_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("slow-model")
    code = root / "slow_model.py"
    code.write_text(textwrap.dedent(SLOW_MODEL))
    example = pd.DataFrame({"x": [1.0, 2.0], "y": [0.5, 0.25]})
    mlflow.pyfunc.save_model(
        str(root / "model"),
        python_model=str(code),
        signature=infer_signature(example, example["x"]),
        pip_requirements=["mlflow"],
    )
    return root / "model"


def test_pyfunc_model_503_while_loading_then_424_when_it_raises(
    slow_model_dir: Path, tmp_path: Path
) -> None:
    env = server_env(SLOW_MODEL_LOAD_S="4")
    with start_server(["--model-dir", str(slow_model_dir)], tmp_path, env=env, wait=False) as srv:
        deadline = time.monotonic() + 120
        first = None
        while first is None and time.monotonic() < deadline:
            try:
                first = srv.request("GET", "/ping")
            except OSError:
                srv.close()
                time.sleep(0.1)
        assert first is not None
        _assert_error(first, 503, "still loading", "GET /ping")
        _assert_error(srv.invoke(b"1,2"), 503, "still loading")
        srv.wait_ready()
        ok = srv.invoke(b"x,y\n1.5,1\n", accept="application/json")
        assert ok.status == 200, ok.body
        assert ok.json() == {"predictions": [4.0]}
        _assert_error(srv.invoke(b"101,1"), 424, "ValueError: x over 100 breaks this model")
        assert srv.invoke(b"2,1").body == b"5.0"


def _fresh(srv: Server, method: str, path: str, body: bytes | None = None) -> int:
    """The status of one request on a new connection (workers share the listening socket)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "text/csv"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_ping_answers_200_only_once_every_worker_has_loaded(
    slow_model_dir: Path, tmp_path: Path
) -> None:
    """Two workers, one loading in 0.2 s and one in 6 s: /ping says ready only when both
    are, so whatever worker a request then reaches answers it (none says "still loading")."""
    env = server_env(SLOW_MODEL_LOAD_S="6", SLOW_MODEL_FIRST_FLAG=str(tmp_path / "first"))
    args = ["--model-dir", str(slow_model_dir), "--workers", "2"]
    started = time.monotonic()
    with start_server(args, tmp_path, env=env, wait=False) as srv:
        deadline = started + 120
        while True:
            try:
                if _fresh(srv, "GET", "/ping") == 200:
                    break
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, srv.log.read_text()[-3000:]
            time.sleep(0.05)
        statuses = [_fresh(srv, "POST", "/invocations", b"2,1\n") for _ in range(40)]
        assert statuses == [200] * 40, statuses


def test_model_that_fails_to_load_answers_503_with_the_reason(
    taxi: tuple[Settings, str, object], tmp_path: Path
) -> None:
    from mlops.serving.model import resolve_model

    settings, version, _ = taxi
    broken = tmp_path / "broken"
    # its own download: the folder another test's server fetched may not be there
    shutil.copytree(resolve_model(settings, f"models:/taxi/{version}").path, broken)
    (broken / "model.ubj").write_bytes(b"garbage")
    with start_server(["--model-dir", str(broken)], tmp_path, wait=False) as srv:
        deadline = time.monotonic() + 120
        resp = None
        while resp is None and time.monotonic() < deadline:
            try:
                resp = srv.request("GET", "/ping")
            except OSError:
                srv.close()
                time.sleep(0.2)
        assert resp is not None
        _assert_error(resp, 503, "failed to load", "cannot load the XGBoost model")
        _assert_error(srv.invoke(b"1,2,3"), 503, "failed to load")


# ------------------------------------------------------------------------ classifier


@pytest.fixture(scope="module")
def classifier(taxi: tuple[Settings, str, object]) -> tuple[Settings, str]:
    """A binary XGBClassifier on the taxi features, registered as `taxi-long-trip`."""
    settings = taxi[0]
    client = connect(settings)
    frame = taxi_rows(500, seed=7)
    label = (frame["duration_minutes"] > 40).astype(int)
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(frame, label)
    experiment_id = ensure_experiment(client, "taxi-long-trip", settings)
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.xgboost.log_model(
            model,
            name="model",
            signature=infer_signature(frame, model.predict(frame)),
            model_format="ubj",
            pip_requirements=model_requirements(),
            registered_model_name="taxi-long-trip",
        )
    return settings, str(info.registered_model_version)


def test_classifier_labels_equal_pyfunc(classifier: tuple[Settings, str], tmp_path: Path) -> None:
    settings, version = classifier
    frame = taxi_rows(100, seed=8)
    want = mlflow.pyfunc.load_model(f"models:/taxi-long-trip/{version}").predict(frame)
    args = ["--model", f"taxi-long-trip/{version}", "--workers", "1"]
    with start_server(args, tmp_path, settings=settings) as srv:
        resp = srv.invoke(csv_of(frame), accept="application/json")
        assert resp.status == 200, resp.body
        got = resp.json()["predictions"]
        assert got == np.asarray(want).tolist()
        assert set(got) == {0, 1}
        assert srv.invoke(csv_of(frame.head(1))).body == str(int(want[0])).encode()


# ----------------------------------------------------------------------- entry points


def test_cli_errors_are_one_line(trained_taxi: tuple[Settings, str], tmp_path: Path) -> None:
    settings, _ = trained_taxi
    run = subprocess.run(
        [sys.executable, "-m", "mlops.serving", "--model", "taxi@nope"],
        env=server_env(settings),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert run.stderr.strip().startswith("error: model 'taxi' has no alias 'nope'")
    assert "Traceback" not in run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "mlops.serving"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=60,
    )
    assert run.returncode == 2 and "--model" in run.stderr


def test_typer_serve_command_checks_its_options() -> None:
    import typer
    from typer.testing import CliRunner

    from flows.cli.serving import serve

    app = typer.Typer()
    app.command()(serve)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, ["serve", "--model", "a", "--model-dir", "b"])
    assert result.exit_code != 0
    assert "give --model" in str(result.exception)


def test_container_serve_script_points_at_opt_ml_model(tmp_path: Path) -> None:
    env = server_env(PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin")
    run = subprocess.run(
        ["sh", str(REPO / "deployments" / "bin" / "serve")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "error: model folder /opt/ml/model does not exist" in run.stderr


def test_plan_server_defaults_and_checks(
    trained_taxi: tuple[Settings, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlops.errors import ConfigError
    from mlops.serving.server import default_port, default_workers, plan_server

    settings, version = trained_taxi
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "3")
    monkeypatch.setenv("SAGEMAKER_BIND_TO_PORT", "9090")
    assert (default_workers(settings), default_port(settings)) == (3, 9090)
    plan = plan_server(settings, model=f"taxi/{version}", capture_destination=str(tmp_path))
    assert (plan.model_name, plan.model_version, plan.workers) == ("taxi", version, 3)
    assert plan.capture is not None
    assert (plan.capture.endpoint_name, plan.capture.variant_name) == ("taxi", "AllTraffic")
    assert plan.capture.sampling_percentage == 100
    bare = plan_server(settings, model_dir=plan.model_dir, capture_destination=str(tmp_path))
    assert bare.capture is not None and bare.capture.endpoint_name == "model"
    assert plan_server(settings, model_dir=plan.model_dir).capture is None  # off by default
    configured = settings.model_copy(deep=True)
    configured.serving.capture.destination = str(tmp_path)
    configured.serving.capture.sampling_percentage = 25
    on = plan_server(configured, model_dir=plan.model_dir, endpoint_name="fares")
    assert on.capture is not None
    assert (on.capture.endpoint_name, on.capture.sampling_percentage) == ("fares", 25)
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "lots")
    with pytest.raises(ConfigError, match="SAGEMAKER_MODEL_SERVER_WORKERS='lots' must be"):
        default_workers(settings)
    with pytest.raises(ConfigError, match="exactly one of --model"):
        plan_server(settings, workers=1)
    with pytest.raises(ConfigError, match="--sampling 101 must be a percentage"):
        plan_server(
            settings, model_dir=plan.model_dir, workers=1, capture_destination="x", sampling=101
        )
