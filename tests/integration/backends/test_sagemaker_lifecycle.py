"""A model's whole life with ``backend = "sagemaker"``: moto plus the two harnesses.

One story for the module, told by module fixtures so that any test alone still runs the
chapters it needs, each test asserting from the caller's side (moto's answers, the MLflow
store, CloudWatch):

1. **Train** twice with the training pipeline (the project image): the SageMaker training
   job really runs the training program (:mod:`tests.sagemaker_harness`), and each
   registered version's lineage tags name its job and ARN. v2 trains on fewer rows, so it
   answers a little differently from v1.
2. **Deploy v1** with the declared deployment pipeline (``run_pipeline``; the version is
   approved first with the registry function ``mlops approve`` uses): dev and prod
   endpoints exist in moto with data capture to S3, the endpoint evaluation was answered
   through ``InvokeEndpoint`` by the fleet harness serving the real ``model.tar.gz``
   (:class:`~tests.integration.backends.sagemaker_fleet.Serving`), and v1 is champion.
3. **Deploy v2** with the pipeline's steps run one by one, as another runtime runs them
   (``run_step``): before v2 is approved the approval step stops the pipeline and prod is
   untouched. Once approved, with prod's alarms strict (a small ``max_signal_shift`` and
   ``signal_tolerance``), SageMaker's guardrails, played by
   :class:`~tests.integration.backends.sagemaker_fleet.Guardrails`, roll the update back on
   the model-signal alarm the package published from green's capture, and v1 stays champion.
   Then the whole pipeline with the usual settings: the ``UpdateEndpoint`` request carries
   the policy's ``DeploymentConfig`` and all four alarms, the rollout record reads
   completed, v2 is champion.
4. **Monitor** the capture the prod fleet wrote to S3, here and as a SageMaker processing
   job (the harness runs ``python -m mlops.pipelines.jobs`` on the job's S3 input): the same
   decision; ``DriftShare`` is in moto's CloudWatch and the dashboard ``mlops-<model>``
   exists. A job whose step fails fails the pipeline with the step's own error.
5. **Probe** prod: ``ProbeSuccessRate`` published, alarm ``mlops-<endpoint>-probe`` made.
6. **Clean up** the model: nothing of it is left in moto.

What moto lacks is played by the harnesses, after botocore validated each request:
``UpdateEndpoint`` (not implemented in moto 5.2.5) and the fleets' traffic and capture
(moto's ``InvokeEndpoint`` answers static data); moto completes jobs without running them,
so the job harness runs them. Prod's strict alarms come from prod's own settings in the
``rollout_prod`` step: the dev update is gated by the same alarms, and with them strict the
dev deploy of a different model would already roll back.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from mlops.errors import ApprovalError, BackendError, RolloutError
from mlops.pipelines import DEPLOYMENT, MONITORING, run_step, run_training_pipeline
from mlops.pipelines.deployment import PIPELINE_RUN_TAG
from mlops.pipelines.spec import run_pipeline
from mlops.registry import approve
from mlops.rollout import RolloutResult
from mlops.settings import Settings
from mlops.stages import load_result
from mlops.tracking import ALIAS_CHAMPION, Tags, connect
from tests.conftest import AWS_TEST_CREDENTIALS, make_settings
from tests.integration.backends.sagemaker_fleet import Guardrails, Serving
from tests.sagemaker_harness import ACCOUNT, IMAGE, REGION, ROLE, install

pytestmark = [pytest.mark.moto, pytest.mark.slow]

MODEL = "taxi-sm"
DEV, PROD = f"{MODEL}-dev", f"{MODEL}-prod"
BUCKET = "mlops-sm-lifecycle"
CAPTURE = f"s3://{BUCKET}/mlops/capture"
ROLLOUT = {
    "traffic_routing": "CANARY",
    "canary_size": 20,
    "wait_interval_s": 120,
    "termination_wait_s": 60,
    "max_execution_s": 1200,
}
USUAL = {"min_requests": 10}  # the package's thresholds: 10% tolerance, 20% share
STRICT = {"min_requests": 10, "max_signal_shift": 0.05, "signal_tolerance": 0.001}
SIGNAL_ROWS = 60  # what green serves while it bakes (each update)


def _settings(root: Path, aws: str, alarms: dict[str, Any]) -> Settings:
    return make_settings(
        root,
        backend="sagemaker",
        aws={"region": REGION, "endpoint_url": aws},
        sagemaker={"role_arn": ROLE, "bucket": BUCKET, "image_uri": IMAGE, "poll_s": 0.01},
        rollout={**ROLLOUT, "alarms": alarms},
    )


def _client(service: str, aws: str) -> Any:
    return boto3.client(service, endpoint_url=aws, region_name=REGION)


@pytest.fixture(scope="module")
def story(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """moto with the job harness and the serving fleet attached; settings of the story."""
    patch = pytest.MonkeyPatch()
    for name, value in AWS_TEST_CREDENTIALS.items():
        patch.setenv(name, value)
    root = tmp_path_factory.mktemp("sm-lifecycle")
    _client("s3", s3_endpoint).create_bucket(Bucket=BUCKET)
    harness = install(patch, s3_endpoint, root / "harness")
    serving = Serving(None, s3_endpoint, monkeypatch=patch)
    yield types.SimpleNamespace(
        aws=s3_endpoint,
        harness=harness,
        serving=serving,
        patch=patch,
        settings=_settings(root, s3_endpoint, USUAL),
        strict=_settings(root, s3_endpoint, STRICT),
        started=datetime.now(UTC) - timedelta(minutes=1),
        guardrails=None,
    )
    serving.close()
    patch.undo()


@pytest.fixture(scope="module")
def trained(story: Any) -> list[Any]:
    """v1 and v2 of the model, each trained by a SageMaker training job."""
    return [
        run_training_pipeline(story.settings, model_name=MODEL, dataset="taxi", rows=rows)
        for rows in (1500, 1200)
    ]


@pytest.fixture(scope="module")
def v1_deployed(story: Any, trained: list[Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The deployment pipeline for v1 (approved first): dev and prod created; what AWS and the
    registry said right after it (later chapters change both)."""
    from mlops.stages._endpoint_rows import reference_rows

    version = str(trained[0].registered.version)
    body, _ = reference_rows(story.settings, MODEL, version, SIGNAL_ROWS)
    rows = [[float(v) for v in line.split(",")] for line in body.decode().splitlines()]
    story.guardrails = Guardrails(None, story.aws, rows, monkeypatch=story.patch)
    approve(connect(story.settings), MODEL, version, approver="release-manager")
    run_id, done = run_pipeline(
        DEPLOYMENT, story.settings, model_name=MODEL, params={"version": version}
    )
    sm = _client("sagemaker", story.aws)
    seen: dict[str, Any] = {}
    for endpoint in (DEV, PROD):
        described = sm.describe_endpoint(EndpointName=endpoint)
        config = sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
        models = [sm.describe_model(ModelName=v["ModelName"]) for v in config["ProductionVariants"]]
        seen[endpoint] = {"endpoint": described, "config": config, "models": models}
    champion = connect(story.settings).get_model_version_by_alias(MODEL, ALIAS_CHAMPION)
    seen["champion"] = str(champion.version)
    return run_id, done, seen


@pytest.fixture(scope="module")
def v2_rolled_back(story: Any, trained: list[Any], v1_deployed: Any) -> dict[str, Any]:
    """v2 through the pipeline's steps one at a time: refused at the approval step until it
    is approved; then, prod's alarms strict, rolled back."""
    version = str(trained[1].registered.version)
    params = {"version": version}

    def dev_and_evaluation() -> str:
        run_id, _ = run_step(
            DEPLOYMENT, "deploy_dev", story.settings, model_name=MODEL, params=params
        )
        run_step(DEPLOYMENT, "evaluate_endpoint", story.settings, model_name=MODEL, run_id=run_id)
        return run_id

    refused_run = dev_and_evaluation()
    with pytest.raises(ApprovalError) as refused:
        run_step(DEPLOYMENT, "approval", story.settings, model_name=MODEL, run_id=refused_run)
    prod_updates = [u for u in story.guardrails.updates if u["EndpointName"] == PROD]
    approve(connect(story.settings), MODEL, version, approver="release-manager")
    run_id = dev_and_evaluation()
    run_step(DEPLOYMENT, "approval", story.settings, model_name=MODEL, run_id=run_id)
    before = len(story.guardrails.updates)
    with pytest.raises(RolloutError) as raised:
        run_step(DEPLOYMENT, "rollout_prod", story.strict, model_name=MODEL, run_id=run_id)
    result = load_result(connect(story.settings), run_id, "rollout_prod", RolloutResult)
    (update,) = story.guardrails.updates[before:]
    champion = connect(story.settings).get_model_version_by_alias(MODEL, ALIAS_CHAMPION)
    return {
        # right after the rollback (v2 ships in a later chapter)
        "champion": str(champion.version),
        "served": _client("sagemaker", story.aws).describe_endpoint(EndpointName=PROD),
        "run_id": run_id,
        "error": str(raised.value),
        "result": result,
        "update": update,
        "refused": (refused_run, str(refused.value), prod_updates),
        "dev_updates": [u for u in story.guardrails.updates if u["EndpointName"] == DEV],
    }


@pytest.fixture(scope="module")
def v2_deployed(story: Any, trained: list[Any], v2_rolled_back: Any) -> dict[str, Any]:
    """The whole pipeline for v2 with the usual alarms: completed."""
    version = str(trained[1].registered.version)
    before = len(story.guardrails.updates)
    run_id, done = run_pipeline(
        DEPLOYMENT, story.settings, model_name=MODEL, params={"version": version}
    )
    updates = story.guardrails.updates[before:]
    names = [
        a["AlarmName"]
        for u in updates
        for a in u["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    ]
    champion = connect(story.settings).get_model_version_by_alias(MODEL, ALIAS_CHAMPION)
    return {  # and what AWS and the registry said right after (cleanup removes it later)
        "run_id": run_id,
        "done": done,
        "updates": updates,
        "alarms": story.guardrails.alarms[before:],
        "champion": str(champion.version),
        "served": _client("sagemaker", story.aws).describe_endpoint(EndpointName=PROD),
        "alarms_left": _client("cloudwatch", story.aws).describe_alarms(AlarmNames=names)[
            "MetricAlarms"
        ],
    }


def test_training_jobs_are_the_lineage_of_the_registered_versions(
    story: Any, trained: list[Any]
) -> None:
    assert [r.trained.job_name for r in trained] == story.harness.training.ran
    client = connect(story.settings)
    for result in trained:
        job = result.trained.job_name
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{job}"
        version = client.get_model_version(MODEL, result.registered.version)
        assert version.tags[Tags.TRAINING_JOB] == job
        assert version.tags[Tags.TRAINING_JOB_ARN] == arn
        described = _client("sagemaker", story.aws).describe_training_job(TrainingJobName=job)
        assert described["TrainingJobStatus"] == "Completed"
        assert described["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert [str(r.registered.version) for r in trained] == ["1", "2"]


def test_v1_ships_to_dev_and_prod_with_data_capture(
    story: Any, trained: list[Any], v1_deployed: tuple[str, dict[str, Any], dict[str, Any]]
) -> None:
    run_id, done, seen = v1_deployed
    for endpoint in (DEV, PROD):
        described, config = seen[endpoint]["endpoint"], seen[endpoint]["config"]
        assert described["EndpointStatus"] == "InService"
        assert described["DataCaptureConfig"]["EnableCapture"] is True
        assert described["DataCaptureConfig"]["DestinationS3Uri"] == CAPTURE
        capture = config["DataCaptureConfig"]
        assert capture["EnableCapture"] is True and capture["InitialSamplingPercentage"] == 100
        assert capture["DestinationS3Uri"] == CAPTURE
        assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
        assert [v["VariantName"] for v in config["ProductionVariants"]] == ["v1"]
        (model,) = seen[endpoint]["models"]
        assert model["PrimaryContainer"]["ModelDataUrl"] == (
            f"s3://{BUCKET}/mlops/models/{MODEL}/1/model.tar.gz"
        )
    # the evaluation step was answered through InvokeEndpoint by v1's own model
    evaluation = done["evaluate_endpoint"]
    assert evaluation.passed and evaluation.endpoint == DEV and evaluation.rows > 0
    assert (DEV, "v1", evaluation.rows) in story.serving.invocations
    client = connect(story.settings)
    run = client.get_run(evaluation.run_id)
    assert run.data.metrics["endpoint_rmse"] == pytest.approx(evaluation.metrics["rmse"])
    assert run.data.tags[PIPELINE_RUN_TAG] == run_id
    assert done["rollout_prod"].completed and done["rollout_prod"].endpoint == PROD
    assert seen["champion"] == "1"


def test_an_unapproved_version_stops_at_the_approval_step_before_prod(
    story: Any, v2_rolled_back: dict[str, Any]
) -> None:
    run_id, error, prod_updates = v2_rolled_back["refused"]
    assert "not approved" in error and f"mlops approve {MODEL} 2" in error
    assert not prod_updates  # prod was never touched
    assert connect(story.settings).get_run(run_id).info.status == "FAILED"


def test_a_shifted_green_is_rolled_back_by_sagemaker_on_the_model_signal_alarm(
    story: Any, v2_rolled_back: dict[str, Any]
) -> None:
    result, update = v2_rolled_back["result"], v2_rolled_back["update"]
    assert update["EndpointName"] == PROD
    assert result.outcome == "rolled_back" and result.alarm == "model_signal"
    assert (
        "rolled back" in v2_rolled_back["error"] and "champion unchanged" in v2_rolled_back["error"]
    )
    assert "model-signal" in result.reason
    client = connect(story.settings)
    record = client.get_run(result.record_run_id)
    assert record.data.tags[Tags.ROLLOUT_OUTCOME] == "rolled_back"
    assert record.data.tags[PIPELINE_RUN_TAG] == v2_rolled_back["run_id"]
    assert v2_rolled_back["champion"] == "1"
    # the package published the shift SageMaker's alarm read: over the strict threshold
    config = update["EndpointConfigName"]
    points = _client("cloudwatch", story.aws).get_metric_statistics(
        Namespace="mlops",
        MetricName="ModelSignalShift",
        Dimensions=[
            {"Name": "EndpointName", "Value": PROD},
            {"Name": "EndpointConfigName", "Value": config},
        ],
        StartTime=story.started,
        EndTime=datetime.now(UTC) + timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert max(p["Maximum"] for p in points) > STRICT["max_signal_shift"]
    served = v2_rolled_back["served"]
    assert served["EndpointConfigName"] != config  # blue's config still serves
    assert [v["VariantName"] for v in served["ProductionVariants"]] == ["v1"]


def test_a_dev_deploy_has_no_model_signal_alarm(v2_rolled_back: dict[str, Any]) -> None:
    # as locally: a dev deploy is judged without live traffic, so nothing to pair
    assert v2_rolled_back["dev_updates"], "v2 went to dev through UpdateEndpoint"
    for update in v2_rolled_back["dev_updates"]:
        config = update["EndpointConfigName"]
        names = [
            a["AlarmName"]
            for a in update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
        ]
        assert names == [
            f"mlops-{config}-{kind}" for kind in ("5xx-rate", "4xx-rate", "latency-p99")
        ]


def test_v2_rolls_out_through_sagemakers_update_with_the_policy_and_four_alarms(
    story: Any, v2_deployed: dict[str, Any]
) -> None:
    done = v2_deployed["done"]
    assert done["deploy_dev"].reason.endswith("already serves taxi-sm v2 as v2")
    (update,), (alarms,) = v2_deployed["updates"], v2_deployed["alarms"]
    assert update["EndpointName"] == PROD
    deployment = update["DeploymentConfig"]
    assert deployment["BlueGreenUpdatePolicy"] == {
        "TrafficRoutingConfiguration": {
            "Type": "CANARY",
            "WaitIntervalInSeconds": 120,
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 20},
        },
        "TerminationWaitInSeconds": 60,
        "MaximumExecutionTimeoutInSeconds": 1200,
    }
    config = update["EndpointConfigName"]
    names = [a["AlarmName"] for a in deployment["AutoRollbackConfiguration"]["Alarms"]]
    assert names == [
        f"mlops-{config}-{kind}" for kind in ("5xx-rate", "4xx-rate", "latency-p99", "model-signal")
    ]
    described = {a["AlarmName"]: a for a in alarms}
    assert set(described) == set(names)  # in CloudWatch when the update started
    signal = described[names[3]]
    assert (signal["Namespace"], signal["MetricName"]) == ("mlops", "ModelSignalShift")
    assert signal["Threshold"] == story.settings.rollout.alarms.max_signal_shift == 0.2
    result = done["rollout_prod"]
    assert result.completed and (result.blue_variant, result.green_variant) == ("v1", "v2")
    assert result.timeline[-1]["signal_pairs"] == SIGNAL_ROWS
    client = connect(story.settings)
    record = client.get_run(result.record_run_id)
    assert record.data.tags[Tags.ROLLOUT_OUTCOME] == "completed"
    assert record.data.tags[PIPELINE_RUN_TAG] == v2_deployed["run_id"]
    assert v2_deployed["champion"] == "2"
    assert v2_deployed["served"]["EndpointConfigName"] == config
    assert not v2_deployed["alarms_left"]  # removed once the update ended


@pytest.fixture(scope="module")
def monitored(story: Any, v2_deployed: Any) -> dict[str, Any]:
    """The monitor over prod's capture in S3, here and as a SageMaker processing job."""
    from mlops.stages.monitor import monitor

    window = {
        "endpoint": PROD,
        "start": story.started.isoformat(),
        "end": (datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
        "capture": CAPTURE,
    }
    here = monitor(story.settings, MODEL, **window)
    in_job = story.settings.model_copy(
        update={"monitoring": story.settings.monitoring.model_copy(update={"processing_job": True})}
    )
    jobs_before = len(story.harness.processing.ran)
    _, done = run_pipeline(MONITORING, in_job, model_name=MODEL, params=window)
    cloudwatch = _client("cloudwatch", story.aws)
    dimensions = [{"Name": "Model", "Value": MODEL}, {"Name": "Endpoint", "Value": PROD}]
    return {
        "here": here,
        "job": done["monitor"],
        "jobs": story.harness.processing.ran[jobs_before:],
        # what CloudWatch held right after (cleanup removes the dashboard later)
        "drift_metrics": cloudwatch.list_metrics(Namespace="mlops", MetricName="DriftShare")[
            "Metrics"
        ],
        "drift_points": cloudwatch.get_metric_statistics(
            Namespace="mlops",
            MetricName="DriftShare",
            Dimensions=dimensions,
            StartTime=story.started,
            EndTime=datetime.now(UTC) + timedelta(minutes=1),
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"],
        "dashboard": cloudwatch.get_dashboard(DashboardName=f"mlops-{MODEL}")["DashboardBody"],
    }


def test_the_monitor_reads_prods_capture_and_publishes_the_drift_share(
    story: Any, monitored: dict[str, Any]
) -> None:
    here = monitored["here"]
    (report,) = here.versions
    assert report.version == "2" and report.variants == ["v2"]
    assert report.rows == 2 * SIGNAL_ROWS  # green's bakes: the rolled-back one and this one
    assert report.drift_share is not None
    run = connect(story.settings).get_run(report.run_id)
    assert run.data.tags["mlops.stage"] == "monitoring"
    assert run.data.tags[Tags.MODEL_VERSION] == "2"
    dimensions = [{"Name": "Model", "Value": MODEL}, {"Name": "Endpoint", "Value": PROD}]
    assert dimensions in [m["Dimensions"] for m in monitored["drift_metrics"]]
    points = monitored["drift_points"]
    assert points and max(p["Maximum"] for p in points) == pytest.approx(report.drift_share)
    body = monitored["dashboard"]
    assert PROD in body and "DriftShare" in body


def test_the_monitor_as_a_processing_job_decides_the_same(
    story: Any, monitored: dict[str, Any]
) -> None:
    (job_name,) = monitored["jobs"]
    assert job_name.startswith(f"monitor-{MODEL}-")
    described = _client("sagemaker", story.aws).describe_processing_job(ProcessingJobName=job_name)
    assert described["AppSpecification"]["ContainerEntrypoint"] == [
        "python", "-m", "mlops.pipelines.jobs",
    ]  # fmt: skip
    (here,), (remote,) = monitored["here"].versions, monitored["job"].versions
    assert (remote.version, remote.rows, remote.status) == (here.version, here.rows, here.status)
    assert remote.drift_detected is here.drift_detected
    assert remote.drifted_features == here.drifted_features
    assert remote.drift_scores == pytest.approx(here.drift_scores)
    assert remote.run_id != here.run_id  # the job logged its own monitoring run


def test_a_failing_processing_job_fails_the_step_with_the_programs_own_error(
    story: Any,
) -> None:
    in_job = story.settings.model_copy(
        update={"monitoring": story.settings.monitoring.model_copy(update={"processing_job": True})}
    )
    with pytest.raises(BackendError) as raised:
        run_pipeline(MONITORING, in_job, model_name="no-such-model", params={"endpoint": PROD})
    job = story.harness.processing.ran[-1]
    assert job.startswith("monitor-no-such-model-") and job in str(raised.value)
    assert "'no-such-model' does not exist" in str(raised.value)
    described = _client("sagemaker", story.aws).describe_processing_job(ProcessingJobName=job)
    assert described["ProcessingJobStatus"] == "Failed"


@pytest.fixture(scope="module")
def probed(story: Any, v2_deployed: Any) -> Any:
    from mlops.stages.probe import probe_endpoint

    result = probe_endpoint(story.settings, MODEL, requests=5, interval_s=0)
    cloudwatch = _client("cloudwatch", story.aws)
    return {  # and what CloudWatch held right after (cleanup removes the alarm later)
        "result": result,
        "invocations": [i for i in story.serving.invocations if i[0] == PROD],
        "points": cloudwatch.get_metric_statistics(
            Namespace="mlops",
            MetricName="ProbeSuccessRate",
            Dimensions=[{"Name": "Endpoint", "Value": PROD}],
            StartTime=story.started,
            EndTime=datetime.now(UTC) + timedelta(minutes=1),
            Period=60,
            Statistics=["Minimum"],
        )["Datapoints"],
        "alarms": cloudwatch.describe_alarms(AlarmNames=[f"mlops-{PROD}-probe"])["MetricAlarms"],
    }


def test_the_synthetic_probe_publishes_its_success_rate_and_alarm(story: Any, probed: Any) -> None:
    result = probed["result"]
    assert (result.endpoint, result.successes, result.alarm) == (PROD, 5, False)
    assert probed["invocations"] == [(PROD, "v2", 1)] * 5
    assert [p["Minimum"] for p in probed["points"]] == [1.0]
    (alarm,) = probed["alarms"]
    assert (alarm["MetricName"], alarm["ComparisonOperator"]) == (
        "ProbeSuccessRate",
        "LessThanThreshold",
    )
    assert alarm["Threshold"] == story.settings.sagemaker.probe_min_success


def test_cleanup_leaves_nothing_of_the_model_in_moto(
    story: Any, monitored: Any, probed: Any
) -> None:
    from mlops.stages.cleanup import plan_cleanup, run_cleanup

    plan = plan_cleanup(story.settings, MODEL)
    kinds = {r.kind for r in plan.resources}
    assert {"endpoint", "endpoint-config", "model", "alarm", "dashboard"} <= kinds
    assert {r.name for r in plan.resources if r.kind == "endpoint"} == {DEV, PROD}
    removed = run_cleanup(story.settings, plan)
    assert {(r.kind, r.name) for r in removed} == {(r.kind, r.name) for r in plan.resources}
    sm, cloudwatch = _client("sagemaker", story.aws), _client("cloudwatch", story.aws)
    # moto ignores some of these filters (list_models' NameContains): filter here as well,
    # since other tests' resources share the session's moto server
    left = [
        *(e["EndpointName"] for e in sm.list_endpoints(NameContains=MODEL)["Endpoints"]),
        *(c["EndpointConfigName"]
          for c in sm.list_endpoint_configs(NameContains=MODEL)["EndpointConfigs"]),
        *(m["ModelName"] for m in sm.list_models(NameContains=MODEL)["Models"]),
        *(a["AlarmName"]
          for a in cloudwatch.describe_alarms(AlarmNamePrefix=f"mlops-{MODEL}")["MetricAlarms"]),
        *(d["DashboardName"] for d in
          cloudwatch.list_dashboards(DashboardNamePrefix=f"mlops-{MODEL}")["DashboardEntries"]),
    ]  # fmt: skip
    assert [name for name in left if MODEL in name] == []
    assert not plan_cleanup(story.settings, MODEL).resources
