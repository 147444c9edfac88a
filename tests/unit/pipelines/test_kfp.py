"""The Kubeflow export: the compiled IR YAML is what kfp's own loader reads, with one
component per declared step, chained by the run id; the CLI's errors are clear."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops.errors import ConfigError
from mlops.pipelines import TRAINING, Param, Pipeline, Step
from mlops.pipelines.kfp import compile_pipeline, component_source
from mlops.stages import PreparedData
from tests.conftest import REPO

kfp = pytest.importorskip("kfp")
from kfp.components import load_component_from_file  # noqa: E402
from kfp.pipeline_spec import pipeline_spec_pb2  # noqa: E402

IMAGE = "registry.example/mlops:9.9"
_TYPES = pipeline_spec_pb2.ParameterType


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kfp") / "training.yaml"
    return compile_pipeline(TRAINING, path, image=IMAGE, default_model="iris")


def test_the_yaml_loads_with_kfp_and_has_a_task_per_step_chained_by_the_run_id(
    compiled: Path,
) -> None:
    spec = load_component_from_file(str(compiled)).pipeline_spec
    tasks = spec.root.dag.tasks
    names = [step.name for step in TRAINING.steps]
    assert sorted(tasks) == sorted(names)
    assert sorted(spec.components) == sorted(f"comp-{name}" for name in names)
    assert "run_id" not in tasks["prepare"].inputs.parameters
    for before, step in zip(TRAINING.steps, TRAINING.steps[1:], strict=False):
        task = tasks[step.name]
        source = task.inputs.parameters["run_id"].task_output_parameter
        assert (source.producer_task, source.output_parameter_key) == (before.name, "Output")
        assert list(task.dependent_tasks) == [before.name]
    assert spec.root.output_definitions.parameters["Output"].parameter_type == _TYPES.STRING
    for step in TRAINING.steps:  # caching off; retries as declared
        assert not tasks[step.name].caching_options.enable_cache
        retries = tasks[step.name].retry_policy.max_retry_count
        assert (retries > 0) == (step.retry == "transient"), step.name


def test_parameters_are_typed_from_the_declaration(compiled: Path) -> None:
    spec = load_component_from_file(str(compiled)).pipeline_spec
    inputs = spec.root.input_definitions.parameters
    assert set(inputs) == {p.name for p in TRAINING.params} | {"model_name"}
    assert inputs["rows"].parameter_type == _TYPES.NUMBER_INTEGER
    assert inputs["hyperparameters"].parameter_type == _TYPES.STRING  # JSON text
    assert inputs["model_name"].default_value.string_value == "iris"
    prepare = spec.components["comp-prepare"].input_definitions.parameters
    assert set(prepare) == {*TRAINING.step("prepare").params, "model_name"}
    train = spec.components["comp-train"].input_definitions.parameters
    assert set(train) == {"run_id", "model_name", "hyperparameters"}


def test_components_run_the_step_on_the_project_image_without_installing(
    compiled: Path,
) -> None:
    executors = yaml.safe_load(compiled.read_text())["deploymentSpec"]["executors"]
    assert sorted(executors) == sorted(f"exec-{step.name}" for step in TRAINING.steps)
    for step in TRAINING.steps:
        container = executors[f"exec-{step.name}"]["container"]
        assert container["image"] == IMAGE
        command = " ".join(container["command"])
        assert "pip install" not in command  # the image has mlops and kfp
        assert f"run_component('training', '{step.name}'" in command
        assert "MLOPS_" not in command and "tracking_uri" not in command  # settings: env


def _toy(stage_params: tuple[Param, ...], step_name: str = "only") -> Pipeline:
    def stage(context: object) -> PreparedData:
        raise AssertionError("never runs when compiling")

    return Pipeline(
        name="toy",
        flow_name="toy",
        description="a toy",
        params=stage_params,
        steps=(
            Step(step_name, stage, (), PreparedData, "never", tuple(p.name for p in stage_params)),
        ),
    )


def test_float_and_json_defaults_keep_their_types(tmp_path: Path) -> None:
    toy = _toy((Param("share", "float", 0.5), Param("extra", "json", {"a": 1})))
    path = compile_pipeline(toy, tmp_path / "toy.yaml", image=IMAGE)
    inputs = load_component_from_file(str(path)).pipeline_spec.root.input_definitions.parameters
    assert inputs["share"].parameter_type == _TYPES.NUMBER_DOUBLE
    assert inputs["share"].default_value.number_value == 0.5
    assert inputs["extra"].default_value.string_value == '{"a": 1}'


@pytest.mark.parametrize(
    ("params", "step_name", "match"),
    [((), "my-step", "Python identifier"), ((Param("run_id", "str"),), "only", "clash")],
)
def test_names_a_component_cannot_take_are_refused(
    params: tuple[Param, ...], step_name: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        component_source(_toy(params, step_name))


def _cli(*args: str, block_kfp: bool = False) -> subprocess.CompletedProcess[str]:
    block = "import sys; sys.modules['kfp'] = None; " if block_kfp else ""
    code = f"{block}from flows.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO,
        timeout=120,
    )  # fmt: skip


def test_without_kfp_the_export_says_which_extra_to_install(tmp_path: Path) -> None:
    result = _cli("export", "kfp", "-o", str(tmp_path / "p.yaml"), block_kfp=True)
    assert result.returncode == 1
    assert "pip install 'mlops[kfp]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "p.yaml").exists()


def test_an_unreachable_host_fails_clearly_and_keeps_the_file(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    host = f"http://127.0.0.1:{port}"
    result = _cli("export", "kfp", "-o", str(tmp_path / "p.yaml"), "--host", host)
    assert result.returncode == 1, result.stdout
    assert f"could not reach Kubeflow Pipelines at --host {host}" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "p.yaml").is_file()


def test_a_pipeline_not_declared_yet_is_named_with_the_declared_ones() -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["export", "kfp", "--pipeline", "batch"])
    assert isinstance(result.exception, ConfigError)
    assert "not declared as steps yet" in str(result.exception)
    assert "'batch-inference'" in str(result.exception)
    assert "declared: deployment, monitoring, training" in str(result.exception)


def test_the_deployment_pipeline_exports_through_the_cli_with_every_step(tmp_path: Path) -> None:
    from mlops.pipelines import DEPLOYMENT

    path = tmp_path / "deployment.yaml"
    result = _cli("export", "kfp", "--pipeline", "deployment", "-o", str(path), "--image", IMAGE)
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert "deploy_dev → evaluate_endpoint → approval → rollout_prod" in said
    spec = load_component_from_file(str(path)).pipeline_spec
    names = [step.name for step in DEPLOYMENT.steps]
    assert names == ["deploy_dev", "evaluate_endpoint", "approval", "rollout_prod"]
    tasks = [name.replace("_", "-") for name in names]  # kfp's names for the steps
    assert sorted(spec.root.dag.tasks) == sorted(tasks)
    rollout = spec.components["comp-rollout-prod"].input_definitions.parameters
    assert set(rollout) == {"run_id", "model_name", *DEPLOYMENT.step("rollout_prod").params}
    assert rollout["canary_size"].parameter_type == _TYPES.NUMBER_DOUBLE
    approval = spec.root.dag.tasks["approval"].inputs.parameters["run_id"]
    assert approval.task_output_parameter.producer_task == "evaluate-endpoint"
    executors = yaml.safe_load(path.read_text())["deploymentSpec"]["executors"]
    for name, task in zip(names, tasks, strict=True):  # the stage functions, via run_step
        command = " ".join(executors[f"exec-{task}"]["container"]["command"])
        assert f"run_component('deployment', '{name}'" in command


class _KfpApi:
    """Kubeflow Pipelines' REST API as the upload uses it, on loopback: ``GET
    /apis/v2beta1/healthz`` and ``POST /apis/v2beta1/pipelines/upload`` (multipart field
    ``uploadfile``), answering 409 for a pipeline name it has already."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlparse

        api = self
        self.pipelines: dict[str, bytes] = {}

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._answer(200, {"commit_sha": "test", "tag_name": "2.3.0"})

            def do_POST(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if url.path != "/apis/v2beta1/pipelines/upload":
                    self._answer(404, {"error": "not found"})
                    return
                name = parse_qs(url.query)["name"][0]
                if name in api.pipelines:
                    self._answer(409, {"error": f"pipeline {name} already exists"})
                    return
                api.pipelines[name] = body
                self._answer(200, {"pipeline_id": f"id-{len(api.pipelines)}", "display_name": name})

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"


def test_the_compiled_pipeline_is_uploaded_to_the_host_once(tmp_path: Path) -> None:
    api = _KfpApi()
    try:
        result = _cli("export", "kfp", "--pipeline", "deployment", "-o", str(tmp_path / "d.yaml"),
                      "--host", api.url)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"uploaded to {api.url} as pipeline id-1" in result.stdout
        body = api.pipelines["mlops-deployment"]
        assert b'name="uploadfile"' in body
        assert (tmp_path / "d.yaml").read_bytes() in body  # the file it compiled, as it is
        again = _cli("export", "kfp", "--pipeline", "deployment", "-o", str(tmp_path / "d.yaml"),
                     "--host", api.url)  # fmt: skip
        assert again.returncode == 1
        assert "refused the upload" in again.stderr and "409" in again.stderr
        assert "Traceback" not in again.stderr
    finally:
        api.server.shutdown()
