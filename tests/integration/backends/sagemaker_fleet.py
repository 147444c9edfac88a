"""Plays SageMaker's part where moto does not: blue/green updates, live traffic, failures.

moto 5.2.5 has no ``UpdateEndpoint``. :class:`Guardrails` answers it on the backend's own
``boto3.Session`` with a botocore ``before-call`` handler, which runs after botocore
validated and serialised the request, so what it records is exactly what would go to AWS.
It then does what SageMaker's deployment guardrails would, in moto's in-process state:

* the endpoint turns ``Updating`` and the green fleet serves live traffic: the green
  model (its ``model.tar.gz`` from the ``ModelDataUrl`` the ``CreateModel`` request named,
  loaded as the ``serve`` entry point would) answers ``rows``, each request captured with
  :class:`mlops.capture.CaptureWriter` to the ``DestinationS3Uri`` of the new endpoint
  config, under green's variant;
* at each ``DescribeEndpoint`` it evaluates the alarms of ``AutoRollbackConfiguration`` as
  CloudWatch would (the datapoints in moto's CloudWatch against each alarm's threshold;
  AWS/SageMaker metrics have no data in moto, which those alarms treat as not breaching);
  a breaching alarm is set to ``ALARM`` and the endpoint goes back to blue's config,
  ``InService``, with a ``FailureReason``; after ``bake_polls`` quiet reads it moves to
  the new config, as a completed update does.

moto's ``InvokeEndpoint`` answers static data. :class:`Serving` answers it the same way
(a ``before-call`` handler, after botocore's validation) with the variant's real model, as
the ``serve`` entry point would: the variant the request targets (else the first one with
weight) of the endpoint's current config, its ``model.tar.gz`` loaded, the body parsed and
the answer encoded by the serving codec, and the request captured with
:class:`mlops.capture.CaptureWriter` when the config's ``DataCaptureConfig`` enables it.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

ACCOUNT, REGION = "123456789012", "us-east-1"


def moto_endpoint(name: str) -> Any:
    """The endpoint in moto's in-process state (the server runs in this process)."""
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[ACCOUNT][REGION].endpoints[name]


def fail_endpoint(name: str, reason: str) -> None:
    """What SageMaker does to an endpoint whose container never answers ``/ping``."""
    endpoint = moto_endpoint(name)
    endpoint.endpoint_status = "Failed"
    endpoint.failure_reason = reason


def _load_model(s3: Any, model_data_url: str, into: Path) -> Any:
    """The model a ``ModelDataUrl`` names, unpacked and loaded as ``serve`` loads it."""
    from mlops.serving.model import ServingModel

    bucket, _, key = model_data_url[5:].partition("/")
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "model.tar.gz"
    s3.download_file(bucket, key, str(archive))
    with tarfile.open(archive) as tar:
        tar.extractall(into / "model", filter="data")
    return ServingModel.load(into / "model")


def _ok(body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from botocore.awsrequest import AWSResponse

    return AWSResponse("https://sagemaker", 200, {}, None), {
        **body,
        "ResponseMetadata": {"HTTPStatusCode": 200},
    }


class Guardrails:
    """SageMaker's blue/green updates for the backend using ``session`` (see the module);
    with ``session=None`` and a ``monkeypatch``, for every botocore session made afterwards
    (botocore registers its built-in handlers on each new session).

    Attributes:
        updates: every ``UpdateEndpoint`` request as sent (after botocore's validation).
        alarms: the alarms of each update's ``AutoRollbackConfiguration`` as CloudWatch held
            them when the update started.
        served: the predictions green answered, per update.
    """

    def __init__(
        self,
        session: Any,
        aws_endpoint: str,
        rows: list[list[float]],
        *,
        bake_polls: int = 3,
        monkeypatch: Any = None,
    ) -> None:
        self.aws_endpoint = aws_endpoint
        self.rows = rows
        self.bake_polls = bake_polls
        self.sm = boto3.client("sagemaker", endpoint_url=aws_endpoint, region_name=REGION)
        self.cw = boto3.client("cloudwatch", endpoint_url=aws_endpoint, region_name=REGION)
        self.s3 = boto3.client("s3", endpoint_url=aws_endpoint, region_name=REGION)
        self.updates: list[dict[str, Any]] = []
        self.alarms: list[list[dict[str, Any]]] = []
        self.served: list[list[float]] = []
        self._pending: dict[str, Any] | None = None
        self._polls = 0
        self._started = datetime.now(UTC)
        hooks = [
            ("before-call.sagemaker.UpdateEndpoint", self._update),
            ("before-call.sagemaker.DescribeEndpoint", self._tick),
        ]
        if session is not None:
            for event, handler in hooks:
                session.events.register(event, handler)
        else:  # every botocore session made from now on (code that makes its own)
            import botocore.handlers

            monkeypatch.setattr(
                botocore.handlers, "BUILTIN_HANDLERS", [*botocore.handlers.BUILTIN_HANDLERS, *hooks]
            )

    # -- UpdateEndpoint ------------------------------------------------------------------
    def _update(self, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        request = json.loads(params["body"])
        self.updates.append(request)
        endpoint = moto_endpoint(request["EndpointName"])
        names = [
            a["AlarmName"]
            for a in request.get("DeploymentConfig", {})
            .get("AutoRollbackConfiguration", {})
            .get("Alarms", [])
        ]
        self.alarms.append(
            self.cw.describe_alarms(AlarmNames=names)["MetricAlarms"] if names else []
        )
        endpoint.endpoint_status = "Updating"
        endpoint.failure_reason = None
        self._pending, self._polls = request, 0
        self._started = datetime.now(UTC)
        self._serve_green(request["EndpointName"], request["EndpointConfigName"])
        return _ok({"EndpointArn": endpoint.arn})

    def _serve_green(self, endpoint: str, config_name: str) -> None:
        """Green answers ``rows`` during the bake; capture records every request."""
        from mlops.capture import CaptureConfig, CaptureWriter
        from mlops.serving.model import ServingModel

        config = self.sm.describe_endpoint_config(EndpointConfigName=config_name)
        variant = config["ProductionVariants"][0]
        model = self.sm.describe_model(ModelName=variant["ModelName"])
        bucket, _, key = model["PrimaryContainer"]["ModelDataUrl"][5:].partition("/")
        capture = config["DataCaptureConfig"]
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "model.tar.gz"
            self.s3.download_file(bucket, key, str(archive))
            with tarfile.open(archive) as tar:
                tar.extractall(Path(tmp) / "model", filter="data")
            served = ServingModel.load(Path(tmp) / "model")
            predictions = [float(p) for p in served.predict(self.rows)]
            writer = CaptureWriter(
                CaptureConfig(
                    destination=capture["DestinationS3Uri"],
                    endpoint_name=endpoint,
                    variant_name=variant["VariantName"],
                    aws_region=REGION,
                    aws_endpoint_url=self.aws_endpoint,
                    spool_dir=str(Path(tmp) / "spool"),
                )
            )
            with writer:
                for row, prediction in zip(self.rows, predictions, strict=True):
                    writer.record(
                        input_body=(",".join(str(v) for v in row) + "\n").encode(),
                        input_content_type="text/csv",
                        output_body=str(prediction).encode(),
                        output_content_type="text/csv",
                    )
        self.served.append(predictions)

    # -- DescribeEndpoint during an update -----------------------------------------------
    def _tick(self, **_: Any) -> None:
        request = self._pending
        if request is None:
            return
        self._polls += 1
        endpoint = moto_endpoint(request["EndpointName"])
        breached = self._breaching(request)
        if breached is not None:
            self.cw.set_alarm_state(
                AlarmName=breached["AlarmName"],
                StateValue="ALARM",
                StateReason=f"Threshold Crossed: a datapoint was greater than the threshold "
                f"({breached['Threshold']})",
            )
            endpoint.endpoint_status = "InService"
            endpoint.failure_reason = (
                f"Rolled back due to alarm {breached['AlarmName']} during the blue/green update"
            )
            self._pending = None
        elif self._polls >= self.bake_polls:
            config = self.sm.describe_endpoint_config(
                EndpointConfigName=request["EndpointConfigName"]
            )
            endpoint.endpoint_config_name = request["EndpointConfigName"]
            endpoint.production_variants = endpoint._process_production_variants(
                config["ProductionVariants"]
            )
            endpoint.endpoint_status = "InService"
            self._pending = None

    def _breaching(self, request: dict[str, Any]) -> dict[str, Any] | None:
        rollback = request.get("DeploymentConfig", {}).get("AutoRollbackConfiguration", {})
        names = [a["AlarmName"] for a in rollback.get("Alarms", [])]
        if not names:
            return None
        for alarm in self.cw.describe_alarms(AlarmNames=names)["MetricAlarms"]:
            if "MetricName" not in alarm:
                continue  # metric math over AWS/SageMaker metrics: no data in moto
            points = self.cw.get_metric_statistics(
                Namespace=alarm["Namespace"],
                MetricName=alarm["MetricName"],
                Dimensions=alarm["Dimensions"],
                StartTime=self._started - timedelta(minutes=5),
                EndTime=datetime.now(UTC) + timedelta(minutes=5),
                Period=60,
                Statistics=["Maximum"],
            )["Datapoints"]
            if any(p["Maximum"] > alarm["Threshold"] for p in points):
                return alarm
        return None


def _register(hooks: list[tuple[str, Any]], session: Any, monkeypatch: Any) -> None:
    if session is not None:
        for event, handler in hooks:
            session.events.register(event, handler)
        return
    import botocore.handlers

    monkeypatch.setattr(
        botocore.handlers, "BUILTIN_HANDLERS", [*botocore.handlers.BUILTIN_HANDLERS, *hooks]
    )


class Serving:
    """SageMaker's fleets answering ``InvokeEndpoint`` with their real models (see the
    module); ``session`` / ``monkeypatch`` as for :class:`Guardrails`.

    Attributes:
        invocations: ``(endpoint, variant, rows)`` of every request answered.
    """

    def __init__(self, session: Any, aws_endpoint: str, *, monkeypatch: Any = None) -> None:
        self.aws_endpoint = aws_endpoint
        self.sm = boto3.client("sagemaker", endpoint_url=aws_endpoint, region_name=REGION)
        self.s3 = boto3.client("s3", endpoint_url=aws_endpoint, region_name=REGION)
        self.invocations: list[tuple[str, str, int]] = []
        self._models: dict[str, Any] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="sm-fleet-")
        _register(
            [("before-call.sagemaker-runtime.InvokeEndpoint", self._invoke)], session, monkeypatch
        )

    def close(self) -> None:
        """Remove the unpacked models."""
        self._tmp.cleanup()

    def _model(self, model_name: str) -> Any:
        if model_name not in self._models:
            url = self.sm.describe_model(ModelName=model_name)["PrimaryContainer"]["ModelDataUrl"]
            into = Path(self._tmp.name) / model_name
            self._models[model_name] = _load_model(self.s3, url, into)
        return self._models[model_name]

    def _invoke(self, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        from botocore.awsrequest import AWSResponse
        from botocore.response import StreamingBody

        from mlops.serving.codec import (
            PayloadError,
            encode_predictions,
            parse_body,
            request_format,
            response_format,
        )

        endpoint = params["url_path"].split("/")[2]
        headers = {k.lower(): v for k, v in params["headers"].items()}
        body = params["body"] if isinstance(params["body"], bytes) else params["body"].encode()
        content_type = headers.get("content-type", "application/octet-stream")
        config = self.sm.describe_endpoint_config(
            EndpointConfigName=moto_endpoint(endpoint).endpoint_config_name
        )
        variants = config["ProductionVariants"]
        target = headers.get("x-amzn-sagemaker-target-variant")
        variant = next(
            (v for v in variants if v["VariantName"] == target)
            if target
            else (v for v in variants if v.get("InitialVariantWeight", 1.0) > 0),
            None,
        )
        if variant is None:  # what SageMaker answers for an unknown target variant
            return AWSResponse("https://runtime.sagemaker", 400, {}, None), {
                "Error": {
                    "Code": "ValidationError",
                    "Message": f"Variant {target} not found for endpoint {endpoint}",
                },
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
        model = self._model(variant["ModelName"])
        try:
            kind, charset = request_format(content_type)
            rows = parse_body(body, kind, charset, model.feature_names)
            answer, answer_type = encode_predictions(
                model.predict(rows), response_format(headers.get("accept"), kind)
            )
        except PayloadError as exc:  # the container's 4xx, as sagemaker-runtime reports it
            return AWSResponse("https://runtime.sagemaker", 424, {}, None), {
                "Error": {"Code": "ModelError", "Message": exc.message},
                "OriginalStatusCode": exc.status,
                "OriginalMessage": exc.message,
                "ResponseMetadata": {"HTTPStatusCode": 424},
            }
        self.invocations.append((endpoint, variant["VariantName"], len(rows)))
        capture = config.get("DataCaptureConfig") or {}
        if capture.get("EnableCapture"):
            self._capture(
                endpoint,
                variant["VariantName"],
                capture,
                body,
                content_type,
                answer,
                answer_type,
                headers.get("x-amzn-sagemaker-inference-id"),
            )
        return AWSResponse("https://runtime.sagemaker", 200, {}, None), {
            "Body": StreamingBody(io.BytesIO(answer), len(answer)),
            "ContentType": answer_type,
            "InvokedProductionVariant": variant["VariantName"],
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }

    def _capture(
        self, endpoint: str, variant: str, capture: dict[str, Any], body: bytes,
        content_type: str, answer: bytes, answer_type: str, inference_id: str | None,
    ) -> None:  # fmt: skip
        from mlops.capture import CaptureConfig, CaptureWriter

        writer = CaptureWriter(
            CaptureConfig(
                destination=capture["DestinationS3Uri"],
                endpoint_name=endpoint,
                variant_name=variant,
                aws_region=REGION,
                aws_endpoint_url=self.aws_endpoint,
                spool_dir=str(Path(self._tmp.name) / "spool"),
            )
        )
        with writer:
            writer.record(
                input_body=body,
                input_content_type=content_type,
                output_body=answer,
                output_content_type=answer_type,
                inference_id=inference_id,
            )
