"""A pipeline is declared once; its runners follow the declaration."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from mlops.errors import ConfigError
from mlops.pipelines import (
    MONITORING,
    PIPELINES,
    TRAINING,
    Param,
    Pipeline,
    Step,
    StepContext,
    get_pipeline,
)
from mlops.pipelines.mlproject import render_mlproject


class Out(BaseModel):
    value: int


def _stage(add: int):
    def stage(context: StepContext, **inputs: Out) -> Out:
        return Out(value=sum(i.value for i in inputs.values()) + add + (context.param("n") or 0))

    return stage


def _pipeline(*steps: Step) -> Pipeline:
    return Pipeline("toy", "toy-flow", "a toy", (Param("n", "int", None),), steps)


def test_steps_run_in_order_with_earlier_results_by_name() -> None:
    toy = _pipeline(
        Step("a", _stage(1), (), Out),
        Step("b", _stage(10), ("a",), Out, "transient", ("n",)),
        Step("c", _stage(100), ("a", "b"), Out),
    )
    seen: list[tuple[str, dict[str, Any]]] = []

    def call(step: Step, context: StepContext, inputs: dict[str, BaseModel]) -> BaseModel:
        seen.append((step.name, {k: v.value for k, v in inputs.items()}))
        return step.stage(context, **inputs)

    context = StepContext(settings=None, model_name="m", run_id="r", params={"n": 5})  # type: ignore[arg-type]
    done = toy.run_steps(context, call=call)
    assert [name for name, _ in seen] == ["a", "b", "c"]
    assert seen[1] == ("b", {"a": 6}) and seen[2] == ("c", {"a": 6, "b": 21})
    assert done["c"].value == 6 + 21 + 100 + 5

    # results already there are not run again (a resumed or per-step run)
    seen.clear()
    toy.run_steps(context, call=call, results={"a": Out(value=0)})
    assert [name for name, _ in seen] == ["b", "c"]


def test_a_declaration_that_cannot_run_is_refused_when_declared() -> None:
    with pytest.raises(ConfigError, match="'b' takes \\['z'\\], which no earlier step gives"):
        _pipeline(Step("a", _stage(1), (), Out), Step("b", _stage(1), ("z",), Out))
    with pytest.raises(ConfigError, match="reads parameter\\(s\\) \\['nope'\\]"):
        _pipeline(Step("a", _stage(1), (), Out, params=("nope",)))
    with pytest.raises(ConfigError, match="two steps named 'a'"):
        _pipeline(Step("a", _stage(1), (), Out), Step("a", _stage(1), (), Out))


def test_unknown_parameters_and_steps_are_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="no parameter\\(s\\) \\['epochs'\\].*dataset"):
        TRAINING.check_params({"epochs": 3})
    with pytest.raises(ConfigError, match="no step 'deploy'; its steps: prepare, train"):
        TRAINING.step("deploy")
    declared = "declared: deployment, monitoring, training"
    with pytest.raises(ConfigError, match=f"no pipeline 'nope'; {declared}"):
        get_pipeline("nope")


def test_the_training_declaration() -> None:
    assert PIPELINES["training"] is TRAINING
    assert [s.name for s in TRAINING.steps] == ["prepare", "train", "evaluate", "baseline",
                                                "register"]
    retry = {s.name: s.retry for s in TRAINING.steps}
    assert retry == {"prepare": "transient", "train": "never", "evaluate": "never",
                     "baseline": "transient", "register": "transient"}
    assert TRAINING.step("register").inputs == ("prepare", "train", "evaluate", "baseline")


def test_the_mlproject_has_main_and_one_entry_point_per_step() -> None:
    import yaml

    doc = yaml.safe_load(render_mlproject(TRAINING, MONITORING))
    entries = doc["entry_points"]
    assert list(entries) == ["main", *(s.name for s in TRAINING.steps), "monitor"]
    assert set(entries["monitor"]["parameters"]) == {"endpoint", "since", "start", "end",
                                                     "capture", "model_name"}
    assert set(entries["prepare"]["parameters"]) == {"dataset", "data", "target", "task",
                                                     "rows", "model_name"}
    assert set(entries["train"]["parameters"]) == {"run_id", "hyperparameters"}
    assert set(entries["register"]["parameters"]) == {"run_id"}
    assert entries["evaluate"]["command"] == (
        "python -m mlops.projects training evaluate --run-id {run_id}"
    )


def test_the_prefect_flow_has_one_task_per_declared_step() -> None:
    from flows.training import STEP_TASKS

    assert list(STEP_TASKS) == [s.name for s in TRAINING.steps]
    for step in TRAINING.steps:
        task = STEP_TASKS[step.name]
        assert task.name == step.name
        assert task.retries == (2 if step.retry == "transient" else 0)


def test_the_deployment_pipeline_checks_its_policy_before_anything_starts(tmp_path) -> None:
    from mlops.pipelines import DEPLOYMENT, run_step
    from tests.conftest import make_settings

    assert [s.name for s in DEPLOYMENT.steps] == [
        "deploy_dev", "evaluate_endpoint", "approval", "rollout_prod",
    ]  # fmt: skip
    assert DEPLOYMENT.step("approval").inputs == ("deploy_dev", "evaluate_endpoint")
    settings = make_settings(tmp_path)
    with pytest.raises(ConfigError, match="routing"):
        run_step(DEPLOYMENT, "deploy_dev", settings, model_name="taxi",
                 params={"traffic_routing": "SIDEWAYS"})  # fmt: skip
    assert not (tmp_path / ".mlops").exists()  # no store, no run, no endpoint
