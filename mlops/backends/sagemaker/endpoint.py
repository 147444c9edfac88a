"""The SageMaker endpoint backend: the :class:`~mlops.backends.EndpointBackend` Protocol
over boto3 (SageMaker, sagemaker-runtime, CloudWatch, Application Auto Scaling).

A variant's registered MLflow model (xgboost flavor) is packed as ``model.tar.gz`` to
``s3://<bucket>/<prefix>/models/<name>/<version>/`` and served by the project image's
``serve`` entry point. Creates and updates send exactly the requests their plan lists
(:mod:`~mlops.backends.sagemaker.endpoint_requests`), each checked against botocore's
service model first. A blue/green update is SageMaker's own (``UpdateEndpoint`` with the
policy's ``DeploymentConfig``, :class:`~mlops.backends.ManagedRollout`); while it bakes,
the model-signal metric is published from green's capture
(:mod:`~mlops.backends.sagemaker.guardrails`). Names and tags: :mod:`.naming`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.backends._s3 import make_client, pack_dir, split_s3
from mlops.backends.endpoint import (
    CaptureDescription,
    EndpointDescription,
    EndpointStatus,
    InvokeResult,
    ManagedRolloutOutcome,
    PlannedRequest,
    SignalJudge,
    VariantDescription,
    VariantMetrics,
    VariantSpec,
)
from mlops.backends.sagemaker.bluegreen import BUSY
from mlops.backends.sagemaker.config import SageMakerConfig
from mlops.backends.sagemaker.endpoint_requests import (
    ResolvedVariant,
    capture_config,
    model_create_request,
    plan_create,
    plan_update,
    production_variant,
    validate_plan,
)
from mlops.backends.sagemaker.naming import (
    TAG_ENDPOINT,
    TAG_MODEL,
    TAG_VERSION,
    alarm_prefix,
    check_endpoint_name,
    endpoint_config_name,
    is_endpoint_alarm,
    is_endpoint_config,
    model_artifact_prefix,
    resource_tags,
    sagemaker_model_name,
)
from mlops.backends.sagemaker.runtime import invoke_endpoint, read_variant_metrics
from mlops.backends.sagemaker.scaling import deregister_request
from mlops.errors import EndpointError, EndpointNotFoundError

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from mlops.policy import BlueGreenPolicy
    from mlops.settings import Settings

__all__ = ["SageMakerEndpointBackend"]

logger = logging.getLogger(__name__)

_STATUS: dict[str, EndpointStatus] = {
    "SystemUpdating": "Updating",
    "UpdateRollbackFailed": "Failed",
}
_CREATE_TIMEOUT_S = 3600.0


class SageMakerEndpointBackend:
    """Endpoints on SageMaker. Settings are checked here, before any request is sent.

    Also offers :class:`~mlops.backends.ManagedRollout` and
    :class:`~mlops.backends.RequestPlanning`.

    Args:
        settings: effective settings (``[sagemaker]``, ``[aws]``, ``[serving.capture]``,
            ``[autoscaling]``).
        session: a ``boto3.Session`` the clients are made from (default: a new one).

    Raises:
        ConfigError: the role, the bucket, the region or the project image is missing or
            invalid (one error naming every gap; nothing is created).
    """

    name = "sagemaker"

    def __init__(self, settings: Settings, *, session: Any = None) -> None:
        self._config = SageMakerConfig.from_settings(settings)
        self._config.require_project_image("a SageMaker endpoint")
        self.settings = settings
        self._session = session
        self._clients: dict[str, Any] = {}
        self._model_tags: dict[str, dict[str, str]] = {}

    @property
    def config(self) -> SageMakerConfig:
        """The checked settings in force."""
        return self._config

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = make_client(
                service, self.settings.aws, self._config.region, self._session
            )
        return self._clients[service]

    def send(self, request: PlannedRequest) -> dict[str, Any]:
        from botocore import xform_name

        method = getattr(self.client(request.service), xform_name(request.operation))
        logger.info("%s %s", request.service, request.operation)
        return method(**request.params)  # type: ignore[no-any-return]

    # -- planning ----------------------------------------------------------------------

    def resolve_variant(self, endpoint: str, spec: VariantSpec) -> ResolvedVariant:
        """The registered version ``spec.model_ref`` names (nothing is downloaded)."""
        from mlflow.exceptions import MlflowException

        from mlops.errors import ModelNotFoundError
        from mlops.serving.model import parse_model_ref
        from mlops.tracking import connect

        name, version, alias = parse_model_ref(spec.model_ref)
        client = connect(self.settings)
        try:
            if alias is not None:
                version = str(client.get_model_version_by_alias(name, alias).version)
            elif version == "latest":
                version = str(
                    max(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
                )
            else:
                version = str(client.get_model_version(name, str(version)).version)
        except (MlflowException, ValueError):
            raise ModelNotFoundError(
                f"model {spec.model_ref!r} of variant {spec.name!r} is not in the registry "
                f"at {self.settings.effective_tracking_uri}; see `mlops models list`"
            ) from None
        key = model_artifact_prefix(self._config.prefix, name, version) + "model.tar.gz"
        return ResolvedVariant(
            spec=spec,
            model_name=name,
            version=version,
            sagemaker_model=sagemaker_model_name(endpoint, spec.name),
            model_data_url=f"s3://{self._config.bucket}/{key}",
        )

    def plan_create_endpoint(
        self, endpoint: str, variants: list[VariantSpec]
    ) -> list[PlannedRequest]:
        """The requests :meth:`create_endpoint` would send, checked, in order."""
        return self._plan_create(endpoint, variants)[1]

    def _plan_create(
        self, endpoint: str, variants: list[VariantSpec]
    ) -> tuple[list[ResolvedVariant], list[PlannedRequest]]:
        check_endpoint_name(endpoint)
        resolved = [self.resolve_variant(endpoint, spec) for spec in variants]
        plan = plan_create(
            self._config, self.settings, endpoint, endpoint_config_name(endpoint), resolved
        )
        return resolved, validate_plan(plan)

    def plan_blue_green_update(
        self, endpoint: str, green: VariantSpec, policy: BlueGreenPolicy
    ) -> list[PlannedRequest]:
        """The requests :meth:`blue_green_update` would send, checked, in order."""
        check_endpoint_name(endpoint)
        return validate_plan(
            plan_update(
                self._config,
                self.settings,
                endpoint,
                endpoint_config_name(endpoint),
                self.resolve_variant(endpoint, green),
                policy,
            )
        )

    def upload_model(self, variant: ResolvedVariant) -> None:
        """Pack the registered version's MLflow model folder as its ``model.tar.gz`` (once)."""
        from botocore.exceptions import ClientError

        from mlops.serving.model import resolve_model

        s3 = self.client("s3")
        bucket, key = split_s3(variant.model_data_url)
        try:
            s3.head_object(Bucket=bucket, Key=key)
            return  # a version's artifacts never change
        except ClientError:
            pass
        local = resolve_model(self.settings, f"models:/{variant.model_name}/{variant.version}")
        with tempfile.TemporaryDirectory() as tmp:
            archive = pack_dir(local.path, Path(tmp) / "model.tar.gz")
            s3.upload_file(str(archive), bucket, key)
        logger.info("uploaded %s/%s to %s", variant.model_name, variant.version, key)

    def _send_plan(self, plan: list[PlannedRequest], wait: Callable[[], None]) -> None:
        waited = False
        for request in plan:
            if request.after and not waited:
                wait()
                waited = True
            self.send(request)

    # -- lifecycle ---------------------------------------------------------------------

    def create_endpoint(self, endpoint: str, variants: list[VariantSpec]) -> EndpointDescription:
        """Create models, config (with data capture) and endpoint; wait until InService;
        then register autoscaling when it is enabled.

        Raises:
            EndpointError: the endpoint exists, or SageMaker failed it (its FailureReason).
        """
        resolved, plan = self._plan_create(endpoint, variants)
        if self._raw(endpoint, missing_ok=True) is not None:
            raise EndpointError(
                f"endpoint {endpoint!r} already exists on SageMaker; update it "
                f"(mlops endpoint update {endpoint} --model NAME/VERSION) or delete it first"
            )
        for variant in resolved:
            self.upload_model(variant)
        self._send_plan(plan, lambda: self._wait_in_service(endpoint, _CREATE_TIMEOUT_S))
        if not any(r.after for r in plan):
            self._wait_in_service(endpoint, _CREATE_TIMEOUT_S)
        return self.describe_endpoint(endpoint)

    def _wait_in_service(self, endpoint: str, timeout_s: float) -> dict[str, Any]:
        raw = self._wait_settled(endpoint, timeout_s)
        if raw["EndpointStatus"] != "InService":
            raise EndpointError(
                f"endpoint {endpoint!r} is {raw['EndpointStatus']}: "
                f"{raw.get('FailureReason') or 'SageMaker gave no reason'}; fix the cause "
                f"(see its CloudWatch logs /aws/sagemaker/Endpoints/{endpoint}), then "
                f"delete it (mlops endpoint delete {endpoint}) and create it again"
            )
        return raw

    def _wait_settled(self, endpoint: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            raw = self._raw(endpoint)
            assert raw is not None
            if raw["EndpointStatus"] not in BUSY:
                return raw
            if time.monotonic() > deadline:
                raise EndpointError(
                    f"endpoint {endpoint!r} is still {raw['EndpointStatus']} after "
                    f"{timeout_s:.0f}s; check it in the SageMaker console"
                )
            time.sleep(self._config.options.poll_s)

    def _raw(self, endpoint: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return self.client("sagemaker").describe_endpoint(  # type: ignore[no-any-return]
                EndpointName=endpoint
            )
        except ClientError as exc:
            if "Could not find" not in str(exc):
                raise
            if missing_ok:
                return None
            raise EndpointNotFoundError(
                f"endpoint {endpoint!r} does not exist on SageMaker in {self._config.region}; "
                "see `mlops endpoint list`"
            ) from None

    def raw_endpoint(self, endpoint: str) -> dict[str, Any]:
        """``DescribeEndpoint``'s answer.

        Raises:
            EndpointNotFoundError: no such endpoint.
        """
        raw = self._raw(endpoint)
        assert raw is not None
        return raw

    def fresh_config_name(self, endpoint: str, current: str) -> str:
        """A config name for ``endpoint`` other than ``current`` (names have whole seconds:
        a change within the second of the last one waits for the next)."""
        name = endpoint_config_name(endpoint)
        while name == current:
            time.sleep(0.1)
            name = endpoint_config_name(endpoint)
        return name

    def endpoint_config(self, name: str) -> dict[str, Any]:
        """``DescribeEndpointConfig``'s answer."""
        return self.client("sagemaker").describe_endpoint_config(  # type: ignore[no-any-return]
            EndpointConfigName=name
        )

    def _tags_of_model(self, model: str) -> dict[str, str]:
        if model not in self._model_tags:
            from botocore.exceptions import ClientError

            sagemaker = self.client("sagemaker")
            try:
                arn = sagemaker.describe_model(ModelName=model)["ModelArn"]
                tags = sagemaker.list_tags(ResourceArn=arn).get("Tags", [])
            except ClientError:
                return {}
            self._model_tags[model] = {t["Key"]: t["Value"] for t in tags}
        return self._model_tags[model]

    def describe_endpoint(self, endpoint: str) -> EndpointDescription:
        """The endpoint as SageMaker runs it (variants with their registered versions)."""
        raw = self.raw_endpoint(endpoint)
        config = self.endpoint_config(raw["EndpointConfigName"])
        configured = {
            v["VariantName"]: v
            for v in [
                *config.get("ProductionVariants", []),
                *config.get("ShadowProductionVariants", []),
            ]
        }
        status = _STATUS.get(raw["EndpointStatus"], raw["EndpointStatus"])
        variants = []
        for shadow, key in ((False, "ProductionVariants"), (True, "ShadowProductionVariants")):
            for live in raw.get(key, []):
                name = live["VariantName"]
                conf = configured.get(name, {})
                tags = self._tags_of_model(conf["ModelName"]) if "ModelName" in conf else {}
                model, version = tags.get(TAG_MODEL), tags.get(TAG_VERSION)
                variants.append(
                    VariantDescription(
                        name=name,
                        status=status,
                        weight=float(
                            live.get("CurrentWeight", conf.get("InitialVariantWeight", 1))
                        ),
                        model_ref=f"models:/{model}/{version}" if model and version else None,
                        model_name=model,
                        model_version=version,
                        shadow=shadow,
                        instance_type=conf.get("InstanceType"),
                        instance_count=int(
                            live.get("CurrentInstanceCount", conf.get("InitialInstanceCount", 1))
                        ),
                    )
                )
        capture = config.get("DataCaptureConfig") or raw.get("DataCaptureConfig") or {}
        return EndpointDescription(
            name=endpoint,
            status=status,  # type: ignore[arg-type]
            variants=tuple(variants),
            capture=CaptureDescription(
                enabled=bool(capture.get("EnableCapture", False)),
                destination=capture.get("DestinationS3Uri"),
                sampling_percentage=int(capture.get("InitialSamplingPercentage", 0)),
            ),
            url=f"https://runtime.sagemaker.{self._config.region}.amazonaws.com/endpoints/"
            f"{endpoint}/invocations",
            last_error=raw.get("FailureReason"),
        )

    def list_endpoints(self) -> list[EndpointDescription]:
        """The endpoints this package created (tagged ``mlops:endpoint``), by name."""
        sagemaker = self.client("sagemaker")
        found = []
        for page in sagemaker.get_paginator("list_endpoints").paginate():
            for summary in page.get("Endpoints", []):
                tags = sagemaker.list_tags(ResourceArn=summary["EndpointArn"]).get("Tags", [])
                if any(t["Key"] == TAG_ENDPOINT for t in tags):
                    found.append(summary["EndpointName"])
        return [self.describe_endpoint(name) for name in sorted(found)]

    def delete_endpoint(self, endpoint: str) -> None:
        """Delete the endpoint, then every config and model of it (those of rolled-back
        updates too), its scaling targets and alarms; capture stays in S3."""
        from botocore.exceptions import ClientError

        raw = self.raw_endpoint(endpoint)
        sagemaker = self.client("sagemaker")
        config = self.endpoint_config(raw["EndpointConfigName"])
        sagemaker.delete_endpoint(EndpointName=endpoint)
        if self.settings.autoscaling.enabled:
            for v in config.get("ProductionVariants", []):
                try:
                    self.send(deregister_request(endpoint, v["VariantName"]))
                except ClientError as exc:
                    logger.info("no scaling target of %s to remove: %s", v["VariantName"], exc)
        pages = sagemaker.get_paginator("list_endpoint_configs").paginate(NameContains=endpoint)
        for page in pages:
            for found in page.get("EndpointConfigs", []):
                if is_endpoint_config(found["EndpointConfigName"], endpoint):
                    sagemaker.delete_endpoint_config(
                        EndpointConfigName=found["EndpointConfigName"]
                    )
        for page in sagemaker.get_paginator("list_models").paginate(NameContains=endpoint):
            for model in page.get("Models", []):
                tags = sagemaker.list_tags(ResourceArn=model["ModelArn"]).get("Tags", [])
                if {"Key": TAG_ENDPOINT, "Value": endpoint} in tags:
                    sagemaker.delete_model(ModelName=model["ModelName"])
                    self._model_tags.pop(model["ModelName"], None)
        self.delete_alarms(endpoint)

    def delete_alarms(self, endpoint: str, names: list[str] | None = None) -> None:
        """Delete ``names``, or every alarm of ``endpoint`` (see :mod:`.naming`)."""
        cloudwatch = self.client("cloudwatch")
        if names is None:
            pages = cloudwatch.get_paginator("describe_alarms").paginate(
                AlarmNamePrefix=alarm_prefix(endpoint)
            )
            names = [
                a["AlarmName"]
                for page in pages
                for a in page.get("MetricAlarms", [])
                if is_endpoint_alarm(a["AlarmName"], endpoint)
            ]
        if names:
            cloudwatch.delete_alarms(AlarmNames=names)

    # -- variants and traffic ----------------------------------------------------------

    def set_weights(self, endpoint: str, weights: dict[str, float]) -> dict[str, float]:
        """``UpdateEndpointWeightsAndCapacities``; wait until InService; every weight."""
        state = self.describe_endpoint(endpoint)
        unknown = set(weights) - {v.name for v in state.variants if not v.shadow}
        if unknown:
            raise EndpointError(
                f"endpoint {endpoint!r} has no production variant {sorted(unknown)}; its "
                f"variants: {', '.join(v.name for v in state.variants)}"
            )
        self.client("sagemaker").update_endpoint_weights_and_capacities(
            EndpointName=endpoint,
            DesiredWeightsAndCapacities=[
                {"VariantName": name, "DesiredWeight": float(w)} for name, w in weights.items()
            ],
        )
        self._wait_in_service(endpoint, _CREATE_TIMEOUT_S)
        return {v.name: v.weight for v in self.describe_endpoint(endpoint).variants}

    def add_variant(self, endpoint: str, spec: VariantSpec) -> VariantDescription:
        """A new endpoint config with the current variants and ``spec``; ``UpdateEndpoint``."""
        resolved = self.resolve_variant(endpoint, spec)
        self.upload_model(resolved)
        model = validate_plan([model_create_request(self._config, endpoint, resolved)])[0]
        variant = production_variant(self._config, resolved)
        key = "ShadowProductionVariants" if spec.shadow else "ProductionVariants"
        self.send(model)
        self._reconfigure(endpoint, lambda conf: conf.setdefault(key, []).append(variant))
        found = self.describe_endpoint(endpoint).variant(spec.name)
        assert found is not None
        return found

    def remove_variant(self, endpoint: str, variant: str) -> None:
        """A new endpoint config without ``variant``; ``UpdateEndpoint``."""

        def drop(conf: dict[str, Any]) -> None:
            for key in ("ProductionVariants", "ShadowProductionVariants"):
                conf[key] = [v for v in conf.get(key, []) if v["VariantName"] != variant]
            if not conf["ProductionVariants"]:
                raise EndpointError(
                    f"{variant!r} is the last production variant of {endpoint!r}; delete "
                    "the endpoint instead"
                )

        self._reconfigure(endpoint, drop)

    def _reconfigure(self, endpoint: str, change: Callable[[dict[str, Any]], None]) -> None:
        raw = self.raw_endpoint(endpoint)
        old = self.endpoint_config(raw["EndpointConfigName"])
        conf: dict[str, Any] = {
            "ProductionVariants": list(old.get("ProductionVariants", [])),
            "ShadowProductionVariants": list(old.get("ShadowProductionVariants", [])),
        }
        change(conf)
        name = self.fresh_config_name(endpoint, raw["EndpointConfigName"])
        models = [self._tags_of_model(v["ModelName"]) for v in conf["ProductionVariants"]]
        model = next((m[TAG_MODEL] for m in models if TAG_MODEL in m), None)
        params: dict[str, Any] = {
            "EndpointConfigName": name,
            "ProductionVariants": [_variant_fields(v) for v in conf["ProductionVariants"]],
            "DataCaptureConfig": capture_config(self.settings, self._config),
            "Tags": resource_tags(model or endpoint, endpoint),
        }
        if conf["ShadowProductionVariants"]:
            params["ShadowProductionVariants"] = [
                _variant_fields(v) for v in conf["ShadowProductionVariants"]
            ]
        update = PlannedRequest(
            "sagemaker",
            "UpdateEndpoint",
            {"EndpointName": endpoint, "EndpointConfigName": name},
        )
        for request in validate_plan(
            [PlannedRequest("sagemaker", "CreateEndpointConfig", params), update]
        ):
            self.send(request)
        self._wait_in_service(endpoint, _CREATE_TIMEOUT_S)

    # -- blue/green and traffic ---------------------------------------------------------

    def blue_green_update(
        self,
        endpoint: str,
        green: VariantSpec,
        policy: BlueGreenPolicy,
        *,
        blue_ref: str | None = None,
        judge: SignalJudge | None = None,
        on_point: Callable[[float, dict[str, float]], None] | None = None,
    ) -> ManagedRolloutOutcome:
        """SageMaker's blue/green update onto ``green`` with the four rollback alarms, the
        model-signal metric published while it runs (:mod:`.bluegreen`)."""
        from mlops.backends.sagemaker.bluegreen import run_blue_green_update

        return run_blue_green_update(
            self, endpoint, green, policy, blue_ref=blue_ref, judge=judge, on_point=on_point
        )

    def invoke(
        self,
        endpoint: str,
        body: bytes | str,
        *,
        content_type: str = "text/csv",
        accept: str | None = None,
        target_variant: str | None = None,
        inference_id: str | None = None,
        timeout: float | None = None,
    ) -> InvokeResult:
        """sagemaker-runtime ``InvokeEndpoint``; error statuses are returned, not raised
        (``timeout`` is the runtime client's own: botocore's read timeout)."""
        return invoke_endpoint(
            self.client("sagemaker-runtime"),
            endpoint,
            body,
            content_type=content_type,
            accept=accept,
            target_variant=target_variant,
            inference_id=inference_id,
        )

    def variant_metrics(
        self, endpoint: str, *, since: float, until: float | None = None
    ) -> dict[str, VariantMetrics]:
        """CloudWatch's metrics of each production variant over ``[since, until)``."""
        variants = [v.name for v in self.describe_endpoint(endpoint).variants if not v.shadow]
        return read_variant_metrics(self.client("cloudwatch"), endpoint, variants, since, until)

    # -- connections -------------------------------------------------------------------

    def close(self) -> None:
        """Drop the clients (the endpoints keep running)."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def __enter__(self) -> SageMakerEndpointBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _variant_fields(variant: dict[str, Any]) -> dict[str, Any]:
    """A described variant as ``CreateEndpointConfig`` takes it again."""
    keep = ("VariantName", "ModelName", "InitialInstanceCount", "InstanceType")
    out = {k: variant[k] for k in keep if k in variant}
    out["InitialVariantWeight"] = float(variant.get("InitialVariantWeight", 1.0))
    return out
