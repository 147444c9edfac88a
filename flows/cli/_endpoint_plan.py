"""``--dry-run`` of ``mlops endpoint create`` and ``update``: the requests it would send.

A backend with :class:`~mlops.backends.RequestPlanning` (SageMaker) gives the exact AWS
requests, each checked against botocore's service model; the local backend's actions are
printed in the same shape (``service`` ``local``), as the controller would take them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from mlops.backends import EndpointDescription, VariantSpec
    from mlops.policy import BlueGreenPolicy
    from mlops.settings import Settings

__all__ = ["print_description", "print_plan"]

out = Console()


def _local(operation: str, params: dict[str, Any], after: str | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"service": "local", "operation": operation, "params": params}
    if after:
        step["after"] = after
    return step


def _local_create(settings: Settings, name: str, specs: list[VariantSpec]) -> list[dict]:
    capture = settings.serving.capture
    return [
        _local(
            "CreateEndpoint",
            {
                "EndpointName": name,
                "Variants": [
                    {
                        "VariantName": s.name,
                        "ModelRef": s.model_ref,
                        "InitialWeight": s.initial_weight,
                        "Shadow": s.shadow,
                    }
                    for s in specs
                ],
                "DataCapture": {
                    "Enabled": capture.enabled,
                    "Destination": settings.capture_destination,
                    "SamplingPercentage": capture.sampling_percentage,
                },
            },
        )
    ]


def _local_update(name: str, green: VariantSpec, policy: BlueGreenPolicy) -> list[dict]:
    steps = [
        _local(
            "AddVariant",
            {"EndpointName": name, "VariantName": green.name, "ModelRef": green.model_ref,
             "InitialWeight": 0.0},
        ),
        _local(
            "Invoke",
            {"EndpointName": name, "TargetVariant": green.name, "Rows": policy.smoke_rows},
            after="pre-traffic hook",
        ),
    ]
    for share in policy.routing.green_shares():
        steps.append(
            _local(
                "SetWeights",
                {"EndpointName": name, "Weights": {green.name: share, "blue": 100.0 - share}},
                after=f"then bake {policy.routing.wait_interval_s:g}s watching the alarms",
            )
        )
    steps.append(
        _local(
            "RemoveVariant",
            {"EndpointName": name, "VariantName": "blue"},
            after=f"termination wait {policy.termination_wait_s:g}s",
        )
    )
    return steps


def print_plan(
    settings: Settings,
    name: str,
    *,
    specs: list[VariantSpec] | None = None,
    green: VariantSpec | None = None,
    policy: BlueGreenPolicy | None = None,
    as_json: bool = False,
) -> None:
    """Print what a create (``specs``) or an update (``green`` and ``policy``) would send."""
    from mlops.backends import RequestPlanning, get_endpoint_backend

    with get_endpoint_backend(settings) as backend:
        if isinstance(backend, RequestPlanning):
            if specs is not None:
                planned = backend.plan_create_endpoint(name, specs)
            else:
                assert green is not None and policy is not None
                planned = backend.plan_blue_green_update(name, green, policy)
            steps = [r.as_dict() for r in planned]
        elif specs is not None:
            steps = _local_create(settings, name, specs)
        else:
            assert green is not None and policy is not None
            steps = _local_update(name, green, policy)
    if as_json:
        out.print_json(json.dumps(steps))
        return
    out.print(f"dry run: {len(steps)} request(s), nothing sent", markup=False)
    for number, step in enumerate(steps, 1):
        after = f"  (after: {step['after']})" if step.get("after") else ""
        out.print(
            f"{number}. {escape(step['service'])} [bold]{escape(step['operation'])}[/]"
            + escape(after)
        )
        out.print(json.dumps(step["params"], indent=2, default=str), markup=False)


def print_description(described: EndpointDescription, as_json: bool) -> None:
    """An endpoint of any backend: status, capture, variants."""
    import dataclasses

    if as_json:
        out.print_json(json.dumps(dataclasses.asdict(described), default=str))
        return
    out.print(f"{described.name}  {described.status}  {described.url or ''}", markup=False)
    capture = described.capture
    out.print(
        f"capture: {capture.sampling_percentage}% to {capture.destination}"
        if capture.enabled
        else "capture: off",
        markup=False,
    )
    for v in described.variants:
        kind = "shadow" if v.shadow else f"weight {v.weight:g}"
        out.print(
            f"  {v.name}: {v.model_ref or '?'} ({kind}, {v.instance_count} x "
            f"{v.instance_type or '?'}) {v.status}",
            markup=False,
        )
