"""The controller's steps as an observer sees them, and resuming an interrupted rollout.

The endpoint here is a small in-memory stand-in for an endpoint backend with request pairing
(variants, weights, the metrics window, the pairing of predictions), so each resume point can
be set up exactly; the real thing is exercised by
tests/integration/endpoints/test_rollout_recovery.py with killed rollout processes.
"""

from __future__ import annotations

from typing import Any

import pytest

from mlops.backends import (
    CaptureDescription,
    EndpointBackend,
    EndpointDescription,
    InvokeResult,
    PairingBatch,
    RequestPairing,
    VariantDescription,
    VariantMetrics,
    VariantSpec,
)
from mlops.errors import RolloutError
from mlops.policy import BlueGreenPolicy
from mlops.rollout import RolloutStep, run_rollout
from mlops.rollout.controller import ResumePoint
from mlops.rollout.results import Phase

POLICY = BlueGreenPolicy.model_validate(
    {
        "routing": {"type": "CANARY", "canary_size": 10, "wait_interval_s": 0},
        "termination_wait_s": 0,
    }
)


class _Gateway:
    """An endpoint backend with request pairing, in memory; every variant answers 200 with
    healthy numbers."""

    name = "memory"

    def __init__(self, weights: dict[str, float], *, green_errors: bool = False) -> None:
        self.weights = dict(weights)
        self.green_errors = green_errors
        self.calls: list[str] = []

    def describe_endpoint(self, endpoint: str) -> EndpointDescription:
        return EndpointDescription(
            name=endpoint,
            status="InService",
            variants=tuple(
                VariantDescription(name=n, status="InService", weight=w)
                for n, w in self.weights.items()
            ),
            capture=CaptureDescription(enabled=False, destination=None, sampling_percentage=0),
        )

    def add_variant(self, endpoint: str, spec: VariantSpec) -> VariantDescription:
        self.calls.append(f"add {spec.name}")
        self.weights[spec.name] = spec.initial_weight
        return VariantDescription(name=spec.name, status="InService", weight=spec.initial_weight)

    def remove_variant(self, endpoint: str, variant: str) -> None:
        self.calls.append(f"remove {variant}")
        del self.weights[variant]

    def set_weights(self, endpoint: str, weights: dict[str, float]) -> dict[str, float]:
        self.calls.append(f"weights {weights}")
        self.weights.update(weights)
        return dict(self.weights)

    def invoke(self, endpoint: str, body: bytes | str, **kw: Any) -> InvokeResult:
        rows = (body.encode() if isinstance(body, str) else body).count(b"\n")
        return InvokeResult(200, b"12.5\n" * rows, "text/csv", kw.get("target_variant"), 3.0)

    def variant_metrics(
        self, endpoint: str, *, since: float, until: float | None = None
    ) -> dict[str, VariantMetrics]:
        def window(name: str) -> VariantMetrics:
            bad = self.green_errors and name == "v2"
            return VariantMetrics(
                requests=50,
                status_2xx=0 if bad else 50,
                status_5xx=50 if bad else 0,
                latency_p50_ms=3.0,
                latency_p99_ms=6.0,
            )

        return {name: window(name) for name in self.weights}

    def start_pairing(
        self, endpoint: str, green: str, blue: str, *, max_per_s: float
    ) -> PairingBatch:
        return PairingBatch(id="p1", active=True, next=0)

    def read_pairing(self, endpoint: str, *, after: int) -> PairingBatch:
        """Green and blue agree on every mirrored row."""
        return PairingBatch(id="p1", active=True, pairs=((12.5, 12.5),) * 50, next=after + 50)

    def stop_pairing(self, endpoint: str) -> None:
        return None

    def list_endpoints(self) -> list[EndpointDescription]:
        return [self.describe_endpoint("ep")]

    def create_endpoint(self, endpoint: str, variants: list[VariantSpec]) -> EndpointDescription:
        raise NotImplementedError

    def delete_endpoint(self, endpoint: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        return None

    def __enter__(self) -> _Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_the_stand_in_is_an_endpoint_backend_that_pairs() -> None:
    gateway = _Gateway({"v1": 1.0})
    assert isinstance(gateway, EndpointBackend) and isinstance(gateway, RequestPairing)


class _Observer:
    def __init__(self) -> None:
        self.started: tuple[str | None, str] | None = None
        self.steps: list[tuple[Phase, int, str]] = []
        self.points = 0

    def on_start(self, blue: str | None, green: str) -> None:
        self.started = (blue, green)

    def on_step(self, steps: list[RolloutStep], phase: Phase, index: int) -> None:
        self.steps.append((phase, index, steps[-1].name.split(":")[0]))

    def on_point(self, index: int, started_at: float, point: dict[str, float]) -> None:
        self.points = index + 1


def _roll(gateway: _Gateway, resume: ResumePoint | None = None, observer: Any = None):
    return run_rollout(
        gateway,  # type: ignore[arg-type]
        endpoint="ep",
        model_name="taxi",
        green_version="2",
        green_ref="models:/taxi/2",
        policy=POLICY,
        smoke_body=b"1,2,3\n4,5,6\n",
        smoke_rows=2,
        observer=observer,
        resume=resume,
        poll_s=0.0,
    )


def test_the_observer_hears_each_step_before_it_acts() -> None:
    observer = _Observer()
    result = _roll(_Gateway({"v1": 1.0}), observer=observer)
    assert result.completed, result.reason
    assert observer.started == ("v1", "v2")
    assert observer.steps == [
        ("start", 0, "create green variant v2"),
        ("start", 0, "pre-traffic hook"),
        ("shift", 0, "shift 10% of traffic to v2"),
        ("shift", 1, "shift 100% of traffic to v2"),
        ("post_traffic", 1, "post-traffic hook"),
        ("retire", 0, "termination wait 0s, then retire blue"),
    ]
    assert observer.points == len(result.timeline) > 0


@pytest.mark.parametrize(
    ("resume", "weights", "expected"),
    [
        (  # killed in the canary bake: smoke test again, then that step and the rest
            ResumePoint(blue="v1", green="v2", phase="shift", share_index=0),
            {"v1": 90.0, "v2": 10.0},
            ["pre-traffic hook", "shift 10%", "shift 100%", "post-traffic hook", "termination"],
        ),
        (  # killed in the post-traffic hook: the last shift's bake again, then the hook
            ResumePoint(blue="v1", green="v2", phase="post_traffic", share_index=1),
            {"v1": 0.0, "v2": 100.0},
            ["pre-traffic hook", "shift 100%", "post-traffic hook", "termination"],
        ),
        (  # killed in the termination wait: only that is left
            ResumePoint(blue="v1", green="v2", phase="retire"),
            {"v1": 0.0, "v2": 100.0},
            ["termination"],
        ),
        (  # killed before green took traffic: start again
            ResumePoint(blue="v1", green="v2", phase="start"),
            {"v1": 1.0, "v2": 0.0},
            ["create green", "pre-traffic hook", "shift 10%", "shift 100%", "post-traffic", "term"],
        ),
        (  # green is gone (its gateway restarted without it): start again
            ResumePoint(blue="v1", green="v2", phase="shift", share_index=0),
            {"v1": 90.0},
            ["create green", "pre-traffic hook", "shift 10%", "shift 100%", "post-traffic", "term"],
        ),
    ],
)
def test_resume_goes_on_from_the_step_it_was_in(
    resume: ResumePoint, weights: dict[str, float], expected: list[str]
) -> None:
    gateway = _Gateway(weights)
    result = _roll(gateway, resume)
    assert result.completed, result.reason
    assert result.reason.startswith("resumed ")
    names = [s.name for s in result.steps]
    assert len(names) == len(expected) and all(
        n.startswith(e) for n, e in zip(names, expected, strict=True)
    ), names
    assert gateway.weights == {"v2": 100.0}
    if resume.phase == "start":
        assert gateway.calls[0] == "remove v2"  # the zero-weight leftover, before anything


def test_resume_after_blue_was_retired_just_finishes() -> None:
    gateway = _Gateway({"v2": 100.0})
    result = _roll(gateway, ResumePoint(blue="v1", green="v2", phase="retire"))
    assert result.completed
    assert result.steps[-1].detail == "v1 was already removed"


def test_a_resumed_rollout_still_rolls_back_on_an_alarm() -> None:
    gateway = _Gateway({"v1": 90.0, "v2": 10.0}, green_errors=True)
    result = _roll(gateway, ResumePoint(blue="v1", green="v2", phase="shift", share_index=0))
    assert result.outcome == "rolled_back" and result.alarm == "5xx_rate"
    assert gateway.weights == {"v1": 100.0}


@pytest.mark.parametrize(
    ("resume", "weights", "match"),
    [
        (ResumePoint(blue="v1", green="v2", phase="rollback"), {"v1": 100.0}, "was rolling back"),
        (
            ResumePoint(blue="v1", green="v2", phase="shift"),
            {"v2": 10.0},
            "blue variant v1 of endpoint ep is gone",
        ),
    ],
)
def test_resume_refuses_what_it_cannot_continue_safely(
    resume: ResumePoint, weights: dict[str, float], match: str
) -> None:
    gateway = _Gateway(weights)
    with pytest.raises(RolloutError, match=match):
        _roll(gateway, resume)
    assert gateway.calls == []


class _WithoutPairing:
    """The same endpoint through the core Protocol only: no request pairing."""

    name = "no-pairing"

    def __init__(self, inner: _Gateway) -> None:
        self.inner = inner
        for op in (
            "describe_endpoint", "list_endpoints", "create_endpoint", "add_variant",
            "remove_variant", "set_weights", "invoke", "variant_metrics", "delete_endpoint",
            "close", "__enter__", "__exit__",
        ):  # fmt: skip
            setattr(self, op, getattr(inner, op))


def test_a_backend_without_pairing_rolls_out_without_the_model_signal_gate() -> None:
    backend = _WithoutPairing(_Gateway({"v1": 1.0}))
    assert isinstance(backend, EndpointBackend) and not isinstance(backend, RequestPairing)
    result = _roll(backend)  # type: ignore[arg-type]
    assert result.completed, result.reason
    assert backend.inner.weights == {"v2": 100.0}
    assert result.timeline and all(p["signal_pairs"] == 0 for p in result.timeline)
    # with pairing, the same rollout judges the pairs
    paired = _roll(_Gateway({"v1": 1.0}))
    assert max(p["signal_pairs"] for p in paired.timeline) > 0
