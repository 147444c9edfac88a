"""The endpoint backend Protocol: what stages and the rollout controller ask of an endpoint.

Implementations: ``local`` (a gateway process on loopback hosting model-server variants,
:class:`mlops.backends.local.endpoint.LocalEndpointBackend`) and ``sagemaker``. Found by
name with :func:`mlops.backends.get_endpoint_backend`.

Every operation names its endpoint, as SageMaker's API does. What crosses the Protocol is
small frozen dataclasses. Capabilities only some backends have are separate Protocols,
checked with ``isinstance``: :class:`RequestPairing` (the model-signal gate's paired
predictions, served by the local gateway), :class:`EndpointProcesses` (starting and
stopping an endpoint's processes on this machine), :class:`ManagedRollout` (the endpoint
runs a blue/green update itself, with its own auto-rollback: SageMaker's deployment
guardrails) and :class:`RequestPlanning` (the exact requests a create or an update would
send, for a dry run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from types import TracebackType

    from mlops.policy import BlueGreenPolicy

__all__ = [
    "CaptureDescription",
    "EndpointBackend",
    "EndpointDescription",
    "EndpointProcesses",
    "EndpointStatus",
    "InvokeResult",
    "ManagedRollout",
    "ManagedRolloutOutcome",
    "PairingBatch",
    "PlannedRequest",
    "RequestPairing",
    "RequestPlanning",
    "SignalJudge",
    "SignalReading",
    "VariantDescription",
    "VariantMetrics",
    "VariantSpec",
]

EndpointStatus = Literal[
    "Creating", "InService", "Updating", "OutOfService", "Failed", "Deleting", "RollingBack"
]


@dataclass(frozen=True)
class VariantSpec:
    """A production variant to create (SageMaker's ``ProductionVariant``).

    Attributes:
        name: variant name (letters, digits, hyphens), e.g. ``v3``.
        model_ref: ``models:/NAME/VERSION`` or ``NAME@ALIAS``.
        initial_weight: relative share of traffic among production variants
            (``InitialVariantWeight``); 0: reachable only with a target-variant header.
        shadow: gets a copy of every request; its answers are only captured, never returned.
        instance_type: e.g. ``ml.m5.large``; ``None``: the backend's default.
        instance_count: instances serving the variant.
    """

    name: str
    model_ref: str
    initial_weight: float = 1.0
    shadow: bool = False
    instance_type: str | None = None
    instance_count: int = 1


@dataclass(frozen=True)
class VariantDescription:
    """One variant as the endpoint runs it now."""

    name: str
    status: str
    weight: float
    model_ref: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    shadow: bool = False
    instance_type: str | None = None
    instance_count: int = 1
    failure_reason: str | None = None

    @property
    def serving(self) -> bool:
        """Whether it takes production traffic (not a shadow, weight above 0)."""
        return not self.shadow and self.weight > 0


@dataclass(frozen=True)
class CaptureDescription:
    """The endpoint's data capture (``DataCaptureConfig``)."""

    enabled: bool
    destination: str | None
    sampling_percentage: int


@dataclass(frozen=True)
class EndpointDescription:
    """An endpoint: its status, capture and variants.

    Attributes:
        metrics_dir: the folder of per-minute metric records a monitor reads for service
            health, when the backend writes them to this machine (the local gateway);
            ``None`` when they live elsewhere (CloudWatch).
    """

    name: str
    status: EndpointStatus
    variants: tuple[VariantDescription, ...]
    capture: CaptureDescription
    url: str | None = None
    metrics_dir: str | None = None
    last_error: str | None = None

    def variant(self, name: str) -> VariantDescription | None:
        """The variant called ``name``, if the endpoint has one."""
        return next((v for v in self.variants if v.name == name), None)

    @property
    def serving(self) -> list[VariantDescription]:
        """The variants taking production traffic."""
        return [v for v in self.variants if v.serving]


@dataclass(frozen=True)
class InvokeResult:
    """The answer to one invocation.

    Attributes:
        status: HTTP status (200, or the model server's/endpoint's error status).
        body: the raw answer.
        content_type: its content type.
        variant: the production variant that answered (``X-Amzn-Invoked-Production-Variant``).
        latency_ms: round trip seen by the caller.
    """

    status: int
    body: bytes
    content_type: str
    variant: str | None
    latency_ms: float

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8", errors="replace")

    def predictions(self) -> list[float]:
        """Numeric predictions of a successful CSV or JSON answer."""
        from mlops.capture import parse_predictions

        return parse_predictions(self.body, self.content_type)


@dataclass(frozen=True)
class VariantMetrics:
    """What the endpoint saw of one variant over a window (CloudWatch's endpoint metrics).

    ``status_4xx`` counts every 4xx answer, model errors (424) included; ``model_errors``
    counts those on their own as well.
    """

    requests: int = 0
    status_2xx: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    model_errors: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None


@dataclass(frozen=True)
class PairingBatch:
    """The paired predictions recorded since a reading (see :class:`RequestPairing`).

    Attributes:
        id: the pairing's id; a new id means the pairing was started again.
        active: whether the endpoint still pairs.
        pairs: (green's, blue's) prediction of the same request, in order.
        next: what to pass as ``after`` next time.
    """

    id: str | None
    active: bool
    pairs: tuple[tuple[float, float], ...] = field(default_factory=tuple)
    next: int = 0


@runtime_checkable
class EndpointBackend(Protocol):
    """Hosts endpoints of weighted model variants. Implementations: ``local``, ``sagemaker``.

    Errors: :class:`~mlops.errors.EndpointNotFoundError` for an unknown endpoint,
    :class:`~mlops.errors.ModelNotFoundError` for an unknown model reference,
    :class:`~mlops.errors.EndpointError` for everything else the endpoint refuses.
    """

    name: str

    def create_endpoint(self, endpoint: str, variants: list[VariantSpec]) -> EndpointDescription:
        """Create the endpoint with ``variants`` (data capture as the settings say) and wait
        until it is in service."""
        ...

    def describe_endpoint(self, endpoint: str) -> EndpointDescription:
        """The endpoint as it runs now."""
        ...

    def list_endpoints(self) -> list[EndpointDescription]:
        """Every endpoint of this backend, by name."""
        ...

    def add_variant(self, endpoint: str, spec: VariantSpec) -> VariantDescription:
        """Start a new variant with ``spec.initial_weight`` and wait until it serves."""
        ...

    def remove_variant(self, endpoint: str, variant: str) -> None:
        """Take a variant out of routing and stop it (its capture flushed)."""
        ...

    def set_weights(self, endpoint: str, weights: dict[str, float]) -> dict[str, float]:
        """Set the named variants' weights in one update; return every variant's weight."""
        ...

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
        """Send one request; error statuses are returned, not raised."""
        ...

    def variant_metrics(
        self, endpoint: str, *, since: float, until: float | None = None
    ) -> dict[str, VariantMetrics]:
        """Each variant's metrics over ``[since, until)`` (unix times; ``until``: now)."""
        ...

    def delete_endpoint(self, endpoint: str) -> None:
        """Stop and remove the endpoint; captured data stays where it was written."""
        ...

    def close(self) -> None:
        """Release the connections this object holds (the endpoints keep running)."""
        ...

    def __enter__(self) -> EndpointBackend: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class RequestPairing(Protocol):
    """Optional: mirror a sample of green's requests to blue and pair the predictions.

    The model-signal gate of a rollout compares green's and blue's answers to the same
    requests. A backend without this capability offers no such gate on the rollout path
    it runs itself (SageMaker publishes the signal as a CloudWatch metric instead).
    """

    def start_pairing(
        self, endpoint: str, green: str, blue: str, *, max_per_s: float
    ) -> PairingBatch:
        """Start pairing (replacing any pairing in progress); its id and first ``next``."""
        ...

    def read_pairing(self, endpoint: str, *, after: int) -> PairingBatch:
        """The pairs numbered above ``after``; ``active`` False when none is in progress."""
        ...

    def stop_pairing(self, endpoint: str) -> None:
        """End the pairing in progress, if any."""
        ...


@runtime_checkable
class EndpointProcesses(Protocol):
    """Optional: endpoints are processes on this machine that can be stopped and started
    again from their saved state (the local gateway)."""

    def start_endpoint(self, endpoint: str) -> EndpointDescription:
        """Start a stopped endpoint again; wait until it is in service."""
        ...

    def stop_endpoint(self, endpoint: str) -> EndpointDescription:
        """Stop the endpoint's processes; its state stays for a later start."""
        ...


@dataclass(frozen=True)
class SignalReading:
    """The model-signal gate's reading of the pairs seen so far in a managed rollout.

    Attributes:
        pairs: paired predictions judged (green's and blue's answer to the same row).
        share: the share of them that differ (``None`` below the gate's minimum).
        fired: whether the gate would roll back (the share is over the threshold, and
            unlikely to be sampling noise).
        reason: why, when it fired.
    """

    pairs: int
    share: float | None = None
    fired: bool = False
    reason: str | None = None


SignalJudge = Callable[[Sequence[tuple[Any, Any]]], SignalReading]
"""Judges (green, blue) prediction pairs: the same statistic as the local gate."""


@dataclass(frozen=True)
class ManagedRolloutOutcome:
    """How a blue/green update run by the endpoint itself ended.

    Attributes:
        outcome: ``completed`` (green serves all traffic, blue is gone) or ``rolled_back``.
        reason: what happened, in the endpoint's words when it rolled back.
        alarm: the alarm that rolled it back, if one did.
        endpoint_config: the configuration the update moved to.
        started_at / ended_at: unix times of the update request and of its end.
        points: the alarm values read at each poll (``t``: seconds from ``started_at``).
    """

    outcome: Literal["completed", "rolled_back"]
    reason: str
    endpoint_config: str
    started_at: float
    ended_at: float
    alarm: str | None = None
    points: tuple[dict[str, float], ...] = ()


@runtime_checkable
class ManagedRollout(Protocol):
    """Optional: the endpoint runs a whole blue/green update itself, traffic shifts, bakes
    and auto-rollback included (SageMaker's ``UpdateEndpoint`` with a ``DeploymentConfig``).

    The rollout controller hands such a backend the policy instead of stepping it.
    """

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
        """Replace the endpoint's fleet with ``green`` under ``policy``; wait for the end.

        Args:
            endpoint: the endpoint.
            green: the new variant (all traffic once the update completes).
            policy: routing, waits, maximum execution time and alarm thresholds.
            blue_ref: the model blue serves, scored on green's captured inputs for the
                model-signal gate (``None``: no gate).
            judge: turns those pairs into the gate's reading.
            on_point: told each poll's alarm values (update start time, values).
        """
        ...


@dataclass(frozen=True)
class PlannedRequest:
    """One request a backend would send: service, operation and its parameters.

    Attributes:
        after: when it is sent, if not right after the one before (e.g. ``InService``).
    """

    service: str
    operation: str
    params: dict[str, Any]
    after: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data: dict[str, Any] = {
            "service": self.service,
            "operation": self.operation,
            "params": self.params,
        }
        if self.after:
            data["after"] = self.after
        return data


@runtime_checkable
class RequestPlanning(Protocol):
    """Optional: the exact requests a create or an update would send, without sending
    them (``--dry-run``)."""

    def plan_create_endpoint(
        self, endpoint: str, variants: list[VariantSpec]
    ) -> list[PlannedRequest]:
        """What :meth:`EndpointBackend.create_endpoint` would send, in order."""
        ...

    def plan_blue_green_update(
        self, endpoint: str, green: VariantSpec, policy: BlueGreenPolicy
    ) -> list[PlannedRequest]:
        """What :meth:`ManagedRollout.blue_green_update` would send to start, in order."""
        ...
