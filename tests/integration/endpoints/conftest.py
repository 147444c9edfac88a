"""Fixtures of the local-endpoint tests: a second registered model, rows to send."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mlops.settings import Settings
from tests.conftest import make_settings

SECOND_MODEL = "taxi-endpoints-b"


@pytest.fixture(scope="module")
def ep_settings(
    trained_taxi: tuple[Settings, str], tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """Settings with the taxi store but a work dir (endpoints, models, capture) of their own."""
    store, _ = trained_taxi
    return make_settings(
        tmp_path_factory.mktemp("endpoints"), tracking_uri=store.effective_tracking_uri
    )


@pytest.fixture(scope="module")
def taxi_ref(trained_taxi: tuple[Settings, str]) -> str:
    """``models:/taxi/<version>`` of the session's trained taxi model."""
    return f"models:/taxi/{trained_taxi[1]}"


@pytest.fixture(scope="module")
def second_ref(trained_taxi: tuple[Settings, str]) -> str:
    """The taxi model registered again under another name: a second, distinct model ref."""
    from mlflow.exceptions import MlflowException

    from mlops.tracking import connect

    store, version = trained_taxi
    client = connect(store)
    try:
        client.get_registered_model(SECOND_MODEL)
    except MlflowException:
        client.create_registered_model(SECOND_MODEL)
    versions = client.search_model_versions(f"name='{SECOND_MODEL}'")
    if not versions:
        source = client.get_model_version("taxi", version)
        created = client.create_model_version(SECOND_MODEL, source.source, run_id=source.run_id)
        return f"models:/{SECOND_MODEL}/{created.version}"
    return f"models:/{SECOND_MODEL}/{max(int(v.version) for v in versions)}"


@pytest.fixture(scope="module")
def csv_rows(ep_settings: Settings, taxi_ref: str) -> list[bytes]:
    """CSV lines (no header, the model's feature order) from the model's input example."""
    from mlflow.models import Model

    from mlops.backends.local.gateway.state import resolve_model_dir

    model_dir, _, _ = resolve_model_dir(ep_settings, taxi_ref)
    model = Model.load(model_dir)
    example = model.load_input_example(model_dir)
    features = model.signature.inputs.input_names()
    buffer = io.StringIO()
    example[features].to_csv(buffer, header=False, index=False, lineterminator="\n")
    lines = [line.encode() + b"\n" for line in buffer.getvalue().splitlines() if line]
    assert lines, f"input example of {taxi_ref} in {Path(model_dir)} has no rows"
    return lines
