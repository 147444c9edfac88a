"""The ``MLproject`` file, written from the pipelines' declarations.

``main`` runs the training pipeline whole in the run ``mlflow run`` created; each step of
every declared pipeline is an entry point of its own. A first step takes the pipeline's
parameters; every later one takes ``run_id``, the run whose earlier results it reads. The
file stays one a person can read, and a test checks it is what :func:`render_mlproject`
writes::

    python -m mlops.pipelines.mlproject > MLproject
"""

from __future__ import annotations

import textwrap

from mlops.pipelines.spec import Param, Pipeline

__all__ = ["render_mlproject"]

# MLproject parameter types: string, float, path, uri (an int is a float; JSON is text)
_TYPES = {"str": "string", "int": "float", "float": "float", "json": "string"}
_HEADER = """\
name: mlops

# Generated from the pipelines' declarations ({modules}) by
#   python -m mlops.pipelines.mlproject > MLproject
# The same stage functions as the Prefect flows. Run them in this project's environment:
#   MLFLOW_TRACKING_URI=sqlite:///.mlops/mlflow.db \\
#     mlflow run . -e main --env-manager local --experiment-name taxi -P dataset=taxi
# A step on its own: -e prepare (prints the run id), then -e train -P run_id=<that id>, ...
# Shipping a version: -e deploy_dev -P version=N (experiment taxi/deployments), then
# evaluate_endpoint, approval (approved in the registry: `mlops approve taxi N`) and
# rollout_prod, each with -P run_id=<that id>. A number parameter left 0 is not given.
python_env: python_env.yaml

entry_points:
"""


def _default(param: Param) -> str:
    if param.type in ("int", "float"):
        return str(param.default or 0)
    return '""' if param.default is None else f'"{param.default}"'


def _entry(name: str, params: list[Param], command: str) -> list[str]:
    lines = [f"  {name}:", "    parameters:"]
    lines += [f"      {p.name}: {{type: {_TYPES[p.type]}, default: {_default(p)}}}" for p in params]
    wrapped = textwrap.wrap(command, width=88, break_on_hyphens=False, break_long_words=False)
    lines += ["    command: >-", *(f"      {part}" for part in wrapped), ""]
    return lines


def _command(pipeline: Pipeline, entry: str, params: list[Param]) -> str:
    args = " ".join(f"--{p.name.replace('_', '-')} {{{p.name}}}" for p in params)
    return f"python -m mlops.projects {pipeline.name} {entry} {args}".rstrip()


def render_mlproject(*pipelines: Pipeline) -> str:
    """The MLproject text: ``main`` (the first pipeline whole) plus one entry point per step
    of every pipeline given."""
    model = Param("model_name", "str", "taxi", "registered model name")
    run_id = Param("run_id", "str", None, "the run of the earlier steps")
    modules = ", ".join(f"mlops/pipelines/{p.name}.py" for p in pipelines)
    lines = [_HEADER.format(modules=modules).rstrip("\n")]
    main = [*pipelines[0].params, model]
    lines += _entry("main", main, _command(pipelines[0], "main", main))
    seen = {"main"}
    for pipeline in pipelines:
        by_name = {p.name: p for p in pipeline.params}
        for step in pipeline.steps:
            if step.name in seen:
                raise ValueError(f"two entry points named {step.name!r}; rename a step")
            seen.add(step.name)
            own = [by_name[name] for name in step.params]
            params = [*own, model] if not step.inputs else [run_id, *own]
            lines += _entry(step.name, params, _command(pipeline, step.name, params))
    return "\n".join(lines)


if __name__ == "__main__":
    from mlops.pipelines import PIPELINES

    print(render_mlproject(*PIPELINES.values()), end="")
