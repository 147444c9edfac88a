"""A pipeline declared once: an ordered list of steps, with no orchestrator in it.

A :class:`Step` names a stage function, the earlier outputs it takes, the result it gives
and how it may be retried. A :class:`Pipeline` is the ordered steps plus the parameters
they read. Every runtime is built from that one declaration:

- :meth:`Pipeline.run` runs the steps in this process, one after the other (the MLproject
  ``main`` entry point, benchmarks, tests);
- the Prefect flow (``flows/``) passes a ``call`` that runs each step as a Prefect task,
  with the step's retry class;
- :func:`run_step` runs one step on its own in a fresh process, taking its inputs from the
  results earlier steps logged to the MLflow run (MLproject stage entry points, Kubeflow
  components, containers);
- :func:`mlops.pipelines.mlproject.render_mlproject` writes ``MLproject`` from it.

So adding a stage is one edit: a new :class:`Step` in the declaration.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from mlops.errors import ConfigError

if TYPE_CHECKING:
    from mlops.backends import LogSink
    from mlops.settings import Settings

__all__ = [
    "Param",
    "Pipeline",
    "RetryClass",
    "Step",
    "StepCall",
    "StepContext",
    "call_directly",
    "run_pipeline",
    "run_step",
]

logger = logging.getLogger(__name__)

RetryClass = Literal["never", "transient"]
"""``transient``: the step only reads and writes stores, so a failure that is not about the
input (a network error, a busy tracking store) may pass when retried; ``never``: retrying
repeats the same work and the same failure (a training job, the quality gate)."""

ParamType = Literal["str", "int", "float", "json"]


@dataclass(frozen=True)
class Param:
    """A pipeline parameter: its name, type, default (``None``: not given) and meaning."""

    name: str
    type: ParamType
    default: Any = None
    help: str = ""


@dataclass(frozen=True)
class StepContext:
    """What every step gets besides its inputs."""

    settings: Settings
    model_name: str
    run_id: str
    params: Mapping[str, Any] = field(default_factory=dict)
    on_log: LogSink | None = None

    def param(self, name: str) -> Any:
        """A parameter's value; ``None`` (or a blank text) when it was not given."""
        value = self.params.get(name)
        return None if value in ("", "None") else value


@dataclass(frozen=True)
class Step:
    """One step: ``stage(context, **inputs) -> result``.

    Attributes:
        name: the step's name; also the name of its result in the MLflow run
            (``mlops/<name>.json``), which later steps take as an input of that name.
        stage: the stage function, called with the :class:`StepContext` and the inputs.
        inputs: names of earlier steps whose results this step takes, in order.
        result: the type of the result (a pydantic model, written as JSON).
        retry: :data:`RetryClass`.
        params: the pipeline parameters the step reads.
        doc: one line on what the step does.
    """

    name: str
    stage: Callable[..., BaseModel]
    inputs: tuple[str, ...]
    result: type[BaseModel]
    retry: RetryClass = "never"
    params: tuple[str, ...] = ()
    doc: str = ""


StepCall = Callable[[Step, StepContext, dict[str, BaseModel]], BaseModel]
"""How a runtime runs one step; the default calls ``step.stage(context, **inputs)``."""


def call_directly(step: Step, context: StepContext, inputs: dict[str, BaseModel]) -> BaseModel:
    """Run ``step`` here and now."""
    return step.stage(context, **inputs)


@dataclass(frozen=True)
class Pipeline:
    """Ordered steps and the parameters they read.

    Attributes:
        name: ``training``, ``monitoring``, ...
        flow_name: the Prefect flow built from it (``training-pipeline``).
        description: one paragraph for the flow, the MLproject and the Kubeflow pipeline.
        params: every parameter any step reads (besides ``model_name``).
        steps: the steps, in the order they run.
    """

    name: str
    flow_name: str
    description: str
    params: tuple[Param, ...]
    steps: tuple[Step, ...]
    open_run: Callable[[Settings, str, dict[str, str]], str] | None = None
    close_run: Callable[[Settings, str, bool], None] | None = None
    check: Callable[[Settings, str, Mapping[str, Any]], None] | None = None
    """Checks that need no work (settings, parameters): every runtime calls it first."""

    def __post_init__(self) -> None:
        seen: set[str] = set()
        known = {p.name for p in self.params}
        for step in self.steps:
            missing = [name for name in step.inputs if name not in seen]
            if missing:
                raise ConfigError(
                    f"pipeline {self.name!r}: step {step.name!r} takes {missing}, which no "
                    "earlier step gives; order the steps so each input comes first"
                )
            unknown = [name for name in step.params if name not in known]
            if unknown:
                raise ConfigError(
                    f"pipeline {self.name!r}: step {step.name!r} reads parameter(s) "
                    f"{unknown} the pipeline does not declare; add them to its params"
                )
            if step.name in seen:
                raise ConfigError(f"pipeline {self.name!r} has two steps named {step.name!r}")
            seen.add(step.name)

    def step(self, name: str) -> Step:
        """The step called ``name``."""
        for step in self.steps:
            if step.name == name:
                return step
        raise ConfigError(
            f"pipeline {self.name!r} has no step {name!r}; its steps: "
            f"{', '.join(s.name for s in self.steps)}"
        )

    def defaults(self) -> dict[str, Any]:
        """Every parameter with its default."""
        return {p.name: p.default for p in self.params}

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` over the defaults; an unknown name is refused with the known ones."""
        unknown = sorted(set(params) - {p.name for p in self.params})
        if unknown:
            raise ConfigError(
                f"pipeline {self.name!r} has no parameter(s) {unknown}; its parameters: "
                f"{', '.join(p.name for p in self.params)}"
            )
        return {**self.defaults(), **params}

    def run_steps(
        self,
        context: StepContext,
        *,
        call: StepCall = call_directly,
        results: dict[str, BaseModel] | None = None,
    ) -> dict[str, BaseModel]:
        """Run every step not in ``results`` yet, in order; return all results by step name."""
        done: dict[str, BaseModel] = dict(results or {})
        for step in self.steps:
            if step.name in done:
                continue
            inputs = {name: done[name] for name in step.inputs}
            logger.info("%s: step %s", self.name, step.name)
            done[step.name] = call(step, context, inputs)
        return done


def run_step(
    pipeline: Pipeline,
    step_name: str,
    settings: Settings,
    *,
    model_name: str,
    run_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    on_log: LogSink | None = None,
) -> tuple[str, BaseModel]:
    """Run one step on its own (a fresh process, a container, a Kubeflow component).

    Its inputs are the results earlier steps logged to the MLflow run ``run_id``. The first
    step opens the pipeline's run when ``run_id`` is not given; the last one closes it
    FINISHED, and a failing step closes it FAILED (the run is the pipeline's, and it failed).

    Returns:
        The run id (to hand to the next step) and the step's result.
    """
    from mlops.stages import load_result
    from mlops.tracking import connect

    step = pipeline.step(step_name)
    values = pipeline.check_params(dict(params or {}))
    if pipeline.check is not None:
        pipeline.check(settings, model_name, values)
    opened = False
    if run_id is None and pipeline.open_run is None and not step.inputs:
        run_id = ""  # a pipeline that keeps no run of its own (its stages log their runs)
    if run_id is None:
        if step.inputs or pipeline.open_run is None:
            raise ConfigError(
                f"step {step.name!r} of pipeline {pipeline.name!r} needs the MLflow run id of "
                "the earlier steps; pass --run-id (the first step's output)"
            )
        run_id = pipeline.open_run(settings, model_name, dict(tags or {}))
        opened = True
    context = StepContext(settings, model_name, run_id, values, on_log)
    try:
        client = connect(settings)
        inputs = {
            name: load_result(client, run_id, name, pipeline.step(name).result)
            for name in step.inputs
        }
        result = step.stage(context, **inputs)
    except BaseException:
        if pipeline.close_run is not None and (opened or step.inputs):
            pipeline.close_run(settings, run_id, True)
        raise
    if pipeline.close_run is not None and step is pipeline.steps[-1]:
        pipeline.close_run(settings, run_id, False)
    return run_id, result


def run_pipeline(
    pipeline: Pipeline,
    settings: Settings,
    *,
    model_name: str,
    params: Mapping[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    call: StepCall = call_directly,
    on_log: LogSink | None = None,
) -> tuple[str, dict[str, BaseModel]]:
    """Run every step of ``pipeline`` in this process, in its run when it keeps one.

    Returns:
        The run id (``""`` for a pipeline that keeps no run) and the results by step name.
    """
    values = pipeline.check_params(dict(params or {}))
    if pipeline.check is not None:
        pipeline.check(settings, model_name, values)
    run_id = ""
    if pipeline.open_run is not None:
        run_id = pipeline.open_run(settings, model_name, dict(tags or {}))
    try:
        done = pipeline.run_steps(
            StepContext(settings, model_name, run_id, values, on_log), call=call
        )
    except BaseException:
        if pipeline.close_run is not None:
            pipeline.close_run(settings, run_id, True)
        raise
    if pipeline.close_run is not None:
        pipeline.close_run(settings, run_id, False)
    return run_id, done
