"""Kubeflow Pipelines: a declared pipeline compiled to KFP v2 IR YAML, and what its
components run.

:func:`build_pipeline` turns a :class:`~mlops.pipelines.spec.Pipeline` into a kfp pipeline
with one lightweight Python component per step, in the declared order, chained by the MLflow
run id: the first step's component opens the pipeline's run and outputs its id; each later
component takes that id (from the task before it), the pipeline's ``model_name`` and the
step's declared parameters, typed from :attr:`Param.type` (``str``, ``int``, ``float``; a
``json`` parameter travels as JSON text). Every component calls :func:`run_component`, which
runs the step with :func:`mlops.pipelines.run_step`: the same stage code as the Prefect flow
and the MLproject entry points. Each component returns the run id, so a step starts only
after the one before it, as in the other runtimes. Caching is off (a step opens, writes or
closes a run, which a cache hit would skip); a ``transient`` step gets retries.

Why the components are generated as source text: kfp embeds a lightweight component's
*source* (``inspect.getsource``) in the compiled YAML and runs it as a module of its own in
the container, so a closure or a ``functools.partial`` over the declaration cannot be a
component: its body would refer to names that do not exist there. Instead this module
writes the functions' text from the declaration (:func:`component_source`), each a
hermetic two-line body that imports :func:`run_component`, into a real ``.py`` file in a
temporary folder, imports it and applies ``kfp.dsl.component`` to each function. kfp
reads the source while it decorates, so the file can go right after; the compiler and
``kfp.local.SubprocessRunner`` both use the embedded text, never the file. (A container
component, which would need no source, is refused by ``SubprocessRunner``; a
containerized Python component needs ``kfp component build`` and Docker.)

Settings travel whole without secrets: a component never takes settings as parameters; it
loads them with :func:`mlops.settings.load_settings` from its runtime's environment
(``MLOPS_*``, ``MLFLOW_TRACKING_URI``, a mounted ``mlops.toml``), i.e. the pod's env and
secrets, or the local process's under ``kfp.local``.

kfp is an optional extra (``pip install 'mlops[kfp]'``), imported only here, inside the
functions that compile or upload. The components run in the project image
(``deployments/Dockerfile``; its lock includes kfp), so kfp is not installed at run time.
"""

from __future__ import annotations

import importlib.util
import json
import keyword
import logging
import sys
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops import __version__
from mlops.errors import ConfigError, MlopsError
from mlops.pipelines.spec import Param, Pipeline, Step

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = [
    "INSTALL_HINT",
    "build_pipeline",
    "compile_pipeline",
    "component_source",
    "project_image",
    "run_component",
    "upload_pipeline",
]

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'mlops[kfp]'"
_TYPES = {"str": "str", "int": "int", "float": "float", "json": "str"}
_RETRIES = 2  # for a ``transient`` step, as the Prefect flow retries it
_RESERVED = ("model_name", "run_id")


def _kfp() -> Any:
    try:
        import kfp
        from kfp import compiler, dsl  # noqa: F401  (the submodules used below)
    except ImportError as exc:
        raise ConfigError(
            "exporting to Kubeflow Pipelines needs the optional package 'kfp'; install it "
            f"with: {INSTALL_HINT}"
        ) from exc
    return kfp


def project_image(settings: Settings) -> str:
    """The project's image (``deployments/Dockerfile``): ``sagemaker.image_uri`` when set,
    else ``mlops:<version>`` (``docker build -f deployments/Dockerfile -t mlops:<version> .``)."""
    return settings.sagemaker.image_uri or f"mlops:{__version__}"


# --- the generated source ---------------------------------------------------------------


def _unset(param: Param) -> Any:
    """The value a component parameter has when the user gave none (kfp.local cannot pass
    ``None`` for a pipeline input): the declared default, else blank or zero."""
    if param.default is not None:
        if param.type == "json":
            return json.dumps(param.default)
        return {"int": int, "float": float}.get(param.type, str)(param.default)
    return {"int": 0, "float": 0.0}.get(param.type, "")


def _check_names(pipeline: Pipeline) -> None:
    names = [step.name for step in pipeline.steps] + [p.name for p in pipeline.params]
    for name in names:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ConfigError(
                f"pipeline {pipeline.name!r}: {name!r} cannot name a Kubeflow component or "
                "parameter; use a Python identifier (letters, digits, underscores)"
            )
    clash = [p.name for p in pipeline.params if p.name in _RESERVED]
    if clash:
        raise ConfigError(
            f"pipeline {pipeline.name!r}: parameter(s) {clash} clash with the run's own "
            f"{list(_RESERVED)}; rename them in the declaration"
        )


def _component(pipeline: Pipeline, step: Step, by_name: dict[str, Param]) -> str:
    first = not step.inputs
    args = ["model_name: str"] if first else ["run_id: str", "model_name: str"]
    args += [f"{name}: {_TYPES[by_name[name].type]}" for name in step.params]
    params = "{" + ", ".join(f"{name!r}: {name}" for name in step.params) + "}"
    run_id = "''" if first else "run_id"
    doc = (step.doc or f"step {step.name}").replace('"""', "'''")
    return (
        f"def {step.name}({', '.join(args)}) -> str:\n"
        f'    """{doc} (returns the MLflow run id)"""\n'
        "    from mlops.pipelines.kfp import run_component\n\n"
        f"    return run_component({pipeline.name!r}, {step.name!r}, model_name, {run_id}, "
        f"{params})\n"
    )


def _pipeline_function(pipeline: Pipeline, default_model: str) -> str:
    args = [f"model_name: str = {default_model!r}"]
    args += [f"{p.name}: {_TYPES[p.type]} = {_unset(p)!r}" for p in pipeline.params]
    body = []
    for step in pipeline.steps:
        given = ["model_name=model_name"] + [f"{name}={name}" for name in step.params]
        if step.inputs:
            given.insert(0, "run_id=run_id")
        body.append(f"run_id = step({step.name!r}, {', '.join(given)})")
    return (
        f"def {pipeline.name}_pipeline({', '.join(args)}) -> str:\n"
        "    # each step runs after the one before it: it takes the run id that one returned\n"
        + "".join(f"    {line}\n" for line in body)
        + "    return run_id\n"
    )


def component_source(pipeline: Pipeline, *, default_model: str = "taxi") -> str:
    """The Python module the Kubeflow components are made from: one function per step and
    the pipeline function that chains them (``step(name, ...)`` is bound when built)."""
    _check_names(pipeline)
    by_name = {p.name: p for p in pipeline.params}
    header = (
        f'"""Kubeflow components of the {pipeline.name} pipeline, generated from its '
        f'declaration\n(mlops/pipelines/{pipeline.name}.py) by mlops.pipelines.kfp."""\n\n'
        "step = None  # set by mlops.pipelines.kfp: calls the named step's component\n"
    )
    parts = [header, *(_component(pipeline, s, by_name) for s in pipeline.steps)]
    parts.append(_pipeline_function(pipeline, default_model))
    return "\n\n".join(parts)


# --- compile, upload ----------------------------------------------------------------------


def build_pipeline(pipeline: Pipeline, *, image: str, default_model: str = "taxi") -> Any:
    """The kfp pipeline (a ``GraphComponent``) for ``pipeline``, its components on ``image``.

    The same object compiles (:func:`compile_pipeline`) and runs under ``kfp.local``.
    """
    kfp = _kfp()
    source = component_source(pipeline, default_model=default_model)
    with tempfile.TemporaryDirectory(prefix="mlops-kfp-") as folder:
        path = Path(folder) / f"mlops_kfp_{pipeline.name}.py"
        path.write_text(source, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        components = {
            s.name: kfp.dsl.component(
                getattr(module, s.name), base_image=image, install_kfp_package=False
            )
            for s in pipeline.steps
        }
    retries = {s.name for s in pipeline.steps if s.retry == "transient"}

    def step(name: str, **arguments: Any) -> Any:
        task = components[name](**arguments)
        task.set_caching_options(False)  # a cached step would skip opening/closing its run
        if name in retries:
            task.set_retry(num_retries=_RETRIES, backoff_duration="5s")
        return task.output

    module.step = step
    function = getattr(module, f"{pipeline.name}_pipeline")
    return kfp.dsl.pipeline(
        function, name=f"mlops-{pipeline.name}", description=pipeline.description
    )


def compile_pipeline(
    pipeline: Pipeline, path: Path, *, image: str, default_model: str = "taxi"
) -> Path:
    """Write ``pipeline`` as Kubeflow Pipelines v2 IR YAML to ``path``."""
    kfp = _kfp()
    built = build_pipeline(pipeline, image=image, default_model=default_model)
    path.parent.mkdir(parents=True, exist_ok=True)
    kfp.compiler.Compiler().compile(built, package_path=str(path))
    return path


def upload_pipeline(path: Path, host: str, *, name: str, description: str = "") -> str:
    """Upload the compiled ``path`` to the KFP endpoint ``host``; return the pipeline id."""
    kfp = _kfp()
    import urllib3
    from kfp_server_api.exceptions import ApiException

    try:
        with warnings.catch_warnings():  # "only works with KFP v2.0.0-beta.2 and later"
            warnings.simplefilter("ignore", FutureWarning)
            client = kfp.Client(host=host)
        uploaded = client.upload_pipeline(
            pipeline_package_path=str(path), pipeline_name=name, description=description
        )
    except ApiException as exc:
        raise MlopsError(
            f"Kubeflow Pipelines at --host {host} refused the upload of {path}: "
            f"{exc.status} {exc.reason}; if a pipeline named {name!r} exists already, "
            "delete it or upload the file as a new version in the KFP UI"
        ) from exc
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MlopsError(
            f"could not reach Kubeflow Pipelines at --host {host}: {first}; check the URL "
            "(e.g. http://localhost:8080 after kubectl port-forward to ml-pipeline-ui). "
            f"The compiled pipeline is in {path}"
        ) from exc
    return str(uploaded.pipeline_id)


# --- what a component runs ------------------------------------------------------------------


def _value(param: Param, value: Any) -> Any:
    """A component argument as the step's parameter; the unset value (blank, zero) is None."""
    if param.default is None and value == _unset(param):
        return None
    if param.type == "json" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ConfigError(
                f"parameter {param.name}={value!r} is not JSON; pass e.g. "
                f"{param.name}='{{\"max_depth\": 8}}'"
            ) from None
    return value


def run_component(
    pipeline_name: str,
    step_name: str,
    model_name: str,
    run_id: str,
    params: Mapping[str, Any],
) -> str:
    """Run one step inside a Kubeflow component; return the MLflow run id for the next one.

    Settings come from the component's environment (never from its parameters).
    """
    from mlops.pipelines import get_pipeline, run_step
    from mlops.settings import load_settings

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
        logging.getLogger("mlops").setLevel(logging.INFO)
    pipeline = get_pipeline(pipeline_name)
    by_name = {p.name: p for p in pipeline.params}
    values = {
        name: converted
        for name, value in params.items()
        if (converted := _value(by_name[name], value)) is not None
    }
    settings = load_settings()
    run_id, result = run_step(
        pipeline,
        step_name,
        settings,
        model_name=model_name,
        run_id=run_id or None,
        params=values,
    )
    print(f"{step_name}: done in run {run_id}: {type(result).__name__}", file=sys.stderr)
    return run_id
