"""Blue/green rollouts on a real local endpoint under live traffic.

Blue is a real taxi XGBoost model. Greens are real registered models: a failing one, a slow
one and a shifted one (MLflow models-from-code wrapping the XGBoost model, no pickle), and a
good retrained XGBoost model. Each bad green must roll back with blue answering every
request it got; the good one completes and becomes champion.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.traffic import TrafficGenerator
from mlops.endpoints.client import EndpointClient
from mlops.endpoints.manager import delete_endpoint, describe_endpoint, list_endpoints
from mlops.endpoints.model_policy import allow_code
from mlops.errors import ApprovalError
from mlops.registry import approve, get_alias_version
from mlops.rollout import BlueGreenPolicy
from mlops.settings import Settings
from mlops.stages.deploy import deploy_prod, endpoint_name, reference_rows
from mlops.stages.pipeline import run_training_pipeline
from mlops.tracking import ALIAS_CHAMPION, Tags, connect, deployments_experiment
from tests.conftest import make_settings

pytestmark = pytest.mark.slow

MODELS = Path(__file__).parent / "models"
POLICY = {
    "traffic_routing": "CANARY",
    "canary_size": 20,
    "wait_interval_s": 4,
    "termination_wait_s": 1,
}


def _log_code_model(settings: Settings, code: str, blue_version: str) -> str:
    """Register a models-from-code pyfunc wrapping blue's XGBoost model; return its version."""
    import mlflow

    client = connect(settings)
    blue = client.get_model_version("taxi", blue_version)
    info = mlflow.models.get_model_info(f"models:/taxi/{blue_version}")
    with (
        mlflow.start_run(experiment_id=client.get_run(blue.run_id).info.experiment_id),
        warnings.catch_warnings(),
    ):
        # plain PythonModels without type hints or an input example: MLflow's hints are noise
        warnings.simplefilter("ignore", UserWarning)
        logged = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODELS / f"{code}_model.py"),
            artifacts={"xgboost": f"models:/taxi/{blue_version}"},
            signature=info.signature,
            pip_requirements=["mlflow", "xgboost"],
        )
    mv = mlflow.register_model(
        logged.model_uri, "taxi", tags={Tags.BASELINE_URI: blue.tags[Tags.BASELINE_URI]}
    )
    approve(client, "taxi", mv.version, comment=f"{code} green for the rollout tests")
    return str(mv.version)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    settings = make_settings(
        tmp_path_factory.mktemp("rollout"),
        rollout={
            "alarms": {"min_requests": 10, "max_latency_p99_ms": 300, "max_signal_shift": 0.25}
        },
    )
    blue = run_training_pipeline(settings, model_name="taxi", dataset="taxi", rows=4000)
    good = run_training_pipeline(
        settings,
        model_name="taxi",
        dataset="taxi",
        rows=4000,
        hyperparameters={"max_depth": 4},
    )
    client = connect(settings)
    v1, v2 = blue.registered.version, good.registered.version
    approve(client, "taxi", v1, comment="blue")
    approve(client, "taxi", v2, comment="good green")
    versions = {
        "blue": v1,
        "good": v2,
        "failing": _log_code_model(settings, "failing", v1),
        "slow": _log_code_model(settings, "slow", v1),
        "shifted": _log_code_model(settings, "shifted", v1),
    }
    first = deploy_prod(settings, "taxi", v1, policy=BlueGreenPolicy.from_settings(settings))
    assert first.completed and first.reason.startswith("created")
    allow_code(settings, endpoint_name(settings, "taxi", "prod"))  # the code greens below
    body, _ = reference_rows(settings, "taxi", v1, 300)
    rows = [line + b"\n" for line in body.splitlines()]
    yield {"settings": settings, "versions": versions, "rows": rows}
    for state in list_endpoints(settings):
        delete_endpoint(settings, state.name)


def _rollout(store: dict[str, object], green: str):
    settings: Settings = store["settings"]  # type: ignore[assignment]
    prod = endpoint_name(settings, "taxi", "prod")
    policy = BlueGreenPolicy.from_settings(settings, **POLICY)
    with TrafficGenerator(
        EndpointClient.for_endpoint(settings, prod),
        store["rows"],
        rate=40,  # type: ignore[arg-type]
    ) as traffic:
        result = deploy_prod(settings, "taxi", green, policy=policy)
    return result, traffic, describe_endpoint(settings, prod)


def _assert_rolled_back(store, result, traffic, state, alarm: str) -> None:
    blue = f"v{store['versions']['blue']}"
    assert result.outcome == "rolled_back", result.summary()
    assert result.alarm == alarm, result.reason
    assert traffic.answered(blue) > 0
    assert traffic.failures(blue) == 0, dict(traffic.statuses)
    assert [(v.name, v.weight) for v in state.variants if not v.shadow] == [(blue, 100.0)]
    settings = store["settings"]
    champion = get_alias_version(connect(settings), "taxi", ALIAS_CHAMPION)
    assert str(champion.version) == store["versions"]["blue"]
    run = connect(settings).get_run(result.record_run_id)
    assert run.data.tags["mlops.rollout.outcome"] == "rolled_back"
    assert run.data.tags["mlops.rollout.alarm"] == alarm
    assert run.info.status == "FAILED"


def test_green_failing_every_request_rolls_back_before_traffic(store) -> None:
    result, traffic, state = _rollout(store, store["versions"]["failing"])
    _assert_rolled_back(store, result, traffic, state, "pre_traffic_hook")
    green = f"v{store['versions']['failing']}"
    assert traffic.answered(green) == 0  # never got live traffic
    assert "424" in result.reason


def test_slow_green_rolls_back_on_latency(store) -> None:
    result, traffic, state = _rollout(store, store["versions"]["slow"])
    _assert_rolled_back(store, result, traffic, state, "latency_p99")
    assert any(s.name.startswith("shift 20%") for s in result.steps)


def test_shifted_green_rolls_back_on_model_signal(store) -> None:
    result, traffic, state = _rollout(store, store["versions"]["shifted"])
    _assert_rolled_back(store, result, traffic, state, "model_signal")
    assert "KS statistic" in result.reason


def test_unapproved_version_is_refused_for_prod(store) -> None:
    settings = store["settings"]
    client = connect(settings)
    import mlflow

    mv = mlflow.register_model(
        f"models:/taxi/{store['versions']['good']}", "taxi"
    )  # a copy, never approved
    with pytest.raises(ApprovalError, match=rf"taxi v{mv.version} is not approved.*mlops approve"):
        deploy_prod(settings, "taxi", str(mv.version))
    prod = describe_endpoint(settings, endpoint_name(settings, "taxi", "prod"))
    assert f"v{mv.version}" not in [v.name for v in prod.variants]
    assert client.get_model_version("taxi", mv.version).tags.get(Tags.APPROVAL) is None


def test_good_green_completes_and_becomes_champion(store) -> None:
    settings = store["settings"]
    versions = store["versions"]
    result, traffic, state = _rollout(store, versions["good"])
    blue, green = f"v{versions['blue']}", f"v{versions['good']}"
    assert result.completed, result.summary()
    assert traffic.failures(blue) == 0 and traffic.failures(green) == 0, dict(traffic.statuses)
    assert traffic.answered(green) > 0
    assert [(v.name, v.weight) for v in state.variants] == [(green, 100.0)]
    champion = get_alias_version(connect(settings), "taxi", ALIAS_CHAMPION)
    assert str(champion.version) == versions["good"]
    names = [s.name for s in result.steps]
    assert names[0].startswith("create green") and "pre-traffic hook" in names[1]
    assert [s.green_share for s in result.steps if s.name.startswith("shift")] == [20.0, 100.0]
    assert any(
        s.name.startswith("post-traffic hook") and "captured" in s.detail for s in result.steps
    )
    client = connect(settings)
    run = client.get_run(result.record_run_id)
    assert (
        run.info.experiment_id
        == client.get_experiment_by_name(deployments_experiment("taxi")).experiment_id
    )
    assert run.data.params["green_version"] == versions["good"]
    assert run.data.params["traffic_routing"] == "CANARY"
    assert "green_requests" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "rollout")}
    assert artifacts == {"rollout/rollout.json", "rollout/rollout.png"}
