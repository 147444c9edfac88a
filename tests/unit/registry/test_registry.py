"""Registry operations against a real MLflow SQLite store and real logged models."""

from __future__ import annotations

import mlflow
import mlflow.xgboost
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from mlflow import MlflowClient

from mlops.errors import ModelNotFoundError
from mlops.registry import (
    approve,
    get_alias_version,
    list_versions,
    register_version,
    reject,
)
from mlops.settings import Settings
from mlops.stages.train import model_requirements
from mlops.tracking import Tags, connect, start_run


@pytest.fixture(scope="module")
def client(module_settings: Settings) -> MlflowClient:
    return connect(module_settings)


def _logged_model(client: MlflowClient, settings: Settings, experiment: str) -> tuple[str, str]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.random(50), "b": rng.random(50)})
    model = xgb.XGBRegressor(n_estimators=3).fit(x, x.a * 2)
    run_id = start_run(client, settings, experiment=experiment)
    client.log_metric(run_id, "test_rmse", 0.5)
    logged = client.create_logged_model(  # in the run's experiment, as the train stage does
        experiment_id=client.get_run(run_id).info.experiment_id, source_run_id=run_id
    )
    info = mlflow.xgboost.log_model(model, name="model", run_id=run_id, input_example=x.head(2),
                                    pip_requirements=model_requirements(),
                                    model_id=logged.model_id)
    return run_id, info.model_uri


def test_register_sets_challenger_pending_and_lineage(
    client: MlflowClient, module_settings: Settings
) -> None:
    run_id, uri = _logged_model(client, module_settings, "reg-a")
    version, created = register_version(
        client, name="reg-a", model_uri=uri, run_id=run_id, fingerprint="fp-1",
        tags={Tags.DATA_DIGEST: "abc"},
    )
    assert created and str(version.version) == "1"
    assert version.tags[Tags.APPROVAL] == "pending"
    assert version.tags[Tags.TRAINING_RUN_ID] == run_id
    assert version.tags[Tags.DATA_DIGEST] == "abc"
    assert str(get_alias_version(client, "reg-a", "challenger").version) == "1"


def test_same_fingerprint_returns_the_existing_version_untouched(
    client: MlflowClient, module_settings: Settings
) -> None:
    run_id, uri = _logged_model(client, module_settings, "reg-b")
    first, _ = register_version(client, name="reg-b", model_uri=uri, run_id=run_id,
                                fingerprint="same", tags={})
    approve(client, "reg-b", first.version, comment="fine", approver="ana")
    run2, uri2 = _logged_model(client, module_settings, "reg-b")
    again, created = register_version(client, name="reg-b", model_uri=uri2, run_id=run2,
                                      fingerprint="same", tags={})
    assert not created and again.version == first.version
    assert again.tags[Tags.APPROVAL] == "approved"
    assert len(client.search_model_versions("name='reg-b'")) == 1


def test_retry_after_a_crash_between_version_and_alias_repairs_the_alias(
    client: MlflowClient, module_settings: Settings
) -> None:
    run_id, uri = _logged_model(client, module_settings, "reg-c")
    register_version(client, name="reg-c", model_uri=uri, run_id=run_id, fingerprint="fp",
                     tags={})
    client.delete_registered_model_alias("reg-c", "challenger")  # as if we died before it
    version, created = register_version(client, name="reg-c", model_uri=uri, run_id=run_id,
                                        fingerprint="fp", tags={})
    assert not created
    assert get_alias_version(client, "reg-c", "challenger").version == version.version


def test_approve_and_reject_record_who_when_and_why(
    client: MlflowClient, module_settings: Settings
) -> None:
    run_id, uri = _logged_model(client, module_settings, "reg-d")
    register_version(client, name="reg-d", model_uri=uri, run_id=run_id, fingerprint="1",
                     tags={})
    approved = approve(client, "reg-d", 1, comment="looks good", approver="ana")
    assert approved.tags[Tags.APPROVAL] == "approved"
    assert approved.tags[Tags.APPROVED_BY] == "ana"
    assert approved.tags[Tags.APPROVAL_COMMENT] == "looks good"
    assert approved.tags[Tags.APPROVED_AT].endswith("Z")

    run2, uri2 = _logged_model(client, module_settings, "reg-d")
    register_version(client, name="reg-d", model_uri=uri2, run_id=run2, fingerprint="2",
                     tags={})
    assert str(get_alias_version(client, "reg-d", "challenger").version) == "2"
    rejected = reject(client, "reg-d", "2", comment="worse on long trips", approver="bo")
    assert rejected.tags[Tags.APPROVAL] == "rejected"
    assert get_alias_version(client, "reg-d", "challenger") is None  # no longer a challenger
    assert client.get_model_version("reg-d", "1").tags[Tags.APPROVAL] == "approved"


def test_unknown_model_or_version_names_what_exists(
    client: MlflowClient, module_settings: Settings
) -> None:
    run_id, uri = _logged_model(client, module_settings, "reg-e")
    register_version(client, name="reg-e", model_uri=uri, run_id=run_id, fingerprint="x",
                     tags={})
    with pytest.raises(ModelNotFoundError, match=r"'no-such-model' does not exist.*reg-e"):
        approve(client, "no-such-model", 1)
    with pytest.raises(ModelNotFoundError, match=r"no version 9 \(versions: 1\)"):
        reject(client, "reg-e", 9)


def test_list_versions_newest_first_with_aliases_and_metrics(
    client: MlflowClient, module_settings: Settings
) -> None:
    for fp in ("l1", "l2"):
        run_id, uri = _logged_model(client, module_settings, "reg-f")
        register_version(client, name="reg-f", model_uri=uri, run_id=run_id, fingerprint=fp,
                         tags={})
    rows = list_versions(client, "reg-f")
    assert [r.version for r in rows] == ["2", "1"]
    assert rows[0].aliases == ["challenger"] and rows[1].aliases == []
    assert rows[0].metrics == {"test_rmse": 0.5}
    assert {r.approval for r in rows} == {"pending"}
    with pytest.raises(ModelNotFoundError):
        list_versions(client, "missing-model")


def test_live_then_retired_reads_in_tags_description_and_list(
    client: MlflowClient, module_settings: Settings
) -> None:
    from mlops.registry import mark_live, mark_retired

    for fp in ("d1", "d2"):
        run_id, uri = _logged_model(client, module_settings, "reg-g")
        register_version(client, name="reg-g", model_uri=uri, run_id=run_id, fingerprint=fp,
                         tags={}, description="first line")
    mark_live(client, "reg-g", "1", endpoint="g-prod", run_id="r1")
    since = client.get_model_version("reg-g", "1").tags[Tags.DEPLOYED_AT]
    mark_live(client, "reg-g", "1", endpoint="g-prod", run_id="r1-again")  # still live
    assert client.get_model_version("reg-g", "1").tags[Tags.DEPLOYED_AT] == since

    mark_retired(client, "reg-g", "1", by="r2", replaced_by="2", experiment_id="7")
    mark_live(client, "reg-g", "2", endpoint="g-prod", run_id="r2")
    old = client.get_model_version("reg-g", "1")
    assert old.tags[Tags.DEPLOYMENT] == "retired"
    assert (old.tags[Tags.RETIRED_BY], old.tags[Tags.REPLACED_BY]) == ("r2", "2")
    assert old.description.startswith("first line\n")
    assert "by [this rollout](#/experiments/7/runs/r2), replaced by v2" in old.description
    rows = {r.version: r for r in list_versions(client, "reg-g")}
    assert (rows["1"].deployment, rows["2"].deployment) == ("retired", "live")

    mark_live(client, "reg-g", "1", endpoint="g-prod", run_id="r3")  # rolled forward again
    back = client.get_model_version("reg-g", "1").tags
    assert back[Tags.DEPLOYMENT] == "live" and back[Tags.DEPLOYMENT_RUN_ID] == "r3"
    assert Tags.RETIRED_BY not in back and Tags.REPLACED_BY not in back


def test_many_rollouts_keep_the_description_within_what_mlflow_stores(
    client: MlflowClient, module_settings: Settings
) -> None:
    from mlops.registry import link_rollout
    from mlops.registry.lineage import DESCRIPTION_LIMIT

    run_id, uri = _logged_model(client, module_settings, "reg-h")
    register_version(client, name="reg-h", model_uri=uri, run_id=run_id, fingerprint="h",
                     tags={}, description="trained by run x")
    ids = [f"{i:032x}" for i in range(60)]  # about 6,000 characters of lines
    for rid in ids:
        link_rollout(client, "reg-h", "1", run_id=rid, experiment_id="3",
                     title=f"h-prod: v0 → v1 #{rid[-3:]}", outcome="completed")
    mv = client.get_model_version("reg-h", "1")
    assert len(mv.description) <= DESCRIPTION_LIMIT
    assert mv.description.startswith("trained by run x\n\n**Rollouts**\n")
    assert f"(#/experiments/3/runs/{ids[-1]})" in mv.description  # the newest stays
    assert f"(#/experiments/3/runs/{ids[0]})" not in mv.description  # the oldest went
    assert mv.tags[Tags.ROLLOUT_RUN_IDS].split(",") == ids  # every id stays in the tag
    assert mv.tags[Tags.LAST_ROLLOUT_RUN_ID] == ids[-1]
