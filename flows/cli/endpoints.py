"""``mlops endpoint``: local endpoints (a gateway on loopback hosting model-server variants).

Traffic, invocations, variant removal, stopping and the rollout commands go through the
endpoint backend Protocol (``mlops.backends``). Creating, starting, describing, listing,
adding a variant from a model folder and deleting with ``--force`` are the local gateway's
own (ports, admin token, model policy, the state file and its processes): those commands
import ``mlops.backends.local.gateway``, the one place in ``flows`` allowed to (see the
import-linter contracts in pyproject.toml).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flows.cli._endpoint_plan import print_description as _print_description
from flows.cli._endpoint_plan import print_plan as _print_plan
from mlops.errors import ConfigError, EndpointError
from mlops.masking import mask_uri

if TYPE_CHECKING:
    from mlops.backends.local.gateway import EndpointState
    from mlops.settings import Settings

__all__ = ["endpoint_app"]

endpoint_app = typer.Typer(
    help="Local endpoints: create, invoke, shift traffic, stop, start, delete.",
    no_args_is_help=True,
)

out = Console()

_STATUS_COLOUR = {
    "InService": "green",
    "Creating": "yellow",
    "Updating": "yellow",
    "Deleting": "yellow",
    "Failed": "red",
    "OutOfService": "red",
}


def _settings() -> Settings:
    from mlops.settings import load_settings

    return load_settings()


def _status(status: str) -> str:
    colour = _STATUS_COLOUR.get(status)
    return f"[{colour}]{escape(status)}[/]" if colour else escape(status)


def _print_state(state: EndpointState) -> None:
    out.print(
        f"[bold]{escape(state.name)}[/]  {_status(state.status)}  "
        + escape(f"{state.url}/invocations  created {state.created_at}")
    )
    if state.admin_url:
        out.print(
            f"admin API: {state.admin_url} (owner only: token in its admin.token)", markup=False
        )
    capture = state.capture
    if capture.enabled:
        out.print(
            f"capture: {capture.sampling_percentage}% to {mask_uri(capture.destination)}",
            markup=False,
        )
    else:
        out.print("capture: off")
    total = sum(v.weight for v in state.variants if not v.shadow)
    table = Table("variant", "model", "weight", "traffic", "status", "instances", "port", "pid")
    for v in state.variants:
        model = f"{v.model_name} v{v.model_version}" if v.model_version else v.model_dir
        if v.shadow:
            share = "shadow copy"
        else:
            share = f"{100 * v.weight / total:.0f}%" if total > 0 else "0%"
        table.add_row(
            escape(v.name),
            escape(str(model)),
            f"{v.weight:g}",
            share,
            _status(v.status),
            f"{v.serving_instances}/{v.instance_count}",
            " ".join(str(i.port) for i in v.instances),
            " ".join(str(i.pid) for i in v.instances),
        )
    out.print(table)
    if (scaling := state.autoscaling) is not None and scaling.enabled:
        out.print(f"autoscaling: {scaling.min_instances}-{scaling.max_instances} instances, "
                  f"target {scaling.target_invocations_per_instance:g} invocations per instance "
                  "per minute", markup=False)  # fmt: skip
        for a in scaling.activities[-5:]:
            out.print(f"  {a.at} {a.variant}: {a.from_count} -> {a.to_count} "
                      f"{a.status} ({a.cause})", markup=False)  # fmt: skip
    for v in state.variants:
        if v.failure_reason and v.status == "Failed":
            out.print(f"[red]{escape(v.name)}:[/] {escape(v.failure_reason)}", highlight=False)
    if state.last_error:
        out.print(f"[red]last error:[/] {escape(state.last_error)}", highlight=False)


@endpoint_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="endpoint name, e.g. taxi-dev")],
    model: Annotated[str, typer.Option("--model", "-m", help="models:/NAME/VERSION or NAME@ALIAS")],
    variant: Annotated[str, typer.Option(help="name of the production variant")] = "AllTraffic",
    shadow: Annotated[
        str | None, typer.Option(help="model of a shadow variant: gets a copy of each request")
    ] = None,
    shadow_variant: Annotated[str, typer.Option(help="name of the shadow variant")] = "shadow",
    no_capture: Annotated[bool, typer.Option("--no-capture", help="no data capture")] = False,
    sampling: Annotated[
        int | None, typer.Option(min=0, max=100, help="percent of requests captured")
    ] = None,
    capture_destination: Annotated[
        str | None, typer.Option(help="capture folder or s3:// URI")
    ] = None,
    port: Annotated[int | None, typer.Option(help="gateway port; default: a free one")] = None,
    instances: Annotated[
        int, typer.Option(min=1, help="model-server processes of the production variant")
    ] = 1,
    allow_code: Annotated[
        bool,
        typer.Option(
            "--allow-code",
            help="serve models that run code when they load (models-from-code, python_model)",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the requests it would send; create nothing")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Start an endpoint (on loopback, or on SageMaker with backend = "sagemaker"); wait
    until InService."""
    from mlops.backends import VariantSpec

    specs = [VariantSpec(variant, model, instance_count=instances)]
    if shadow:
        specs.append(VariantSpec(shadow_variant, shadow, initial_weight=0.0, shadow=True))
    settings = _settings()
    if dry_run:
        _print_plan(settings, name, specs=specs, as_json=as_json)
        return
    if settings.backend != "local":  # the gateway's own options do not apply
        from mlops.backends import get_endpoint_backend

        with out.status(f"creating endpoint {name}…"), get_endpoint_backend(settings) as backend:
            described = backend.create_endpoint(name, specs)
        _print_description(described, as_json)
        return
    from mlops.backends.local.gateway import create_endpoint

    with out.status(f"creating endpoint {name}…"):
        state = create_endpoint(
            settings,
            name,
            specs,
            capture=False if no_capture else None,
            capture_destination=capture_destination,
            sampling=sampling,
            port=port,
            allow_code=allow_code,
        )
    _print_state(state)


@endpoint_app.command("describe")
def describe(
    name: Annotated[str, typer.Argument(help="endpoint name")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Status, variants, weights and capture of one endpoint, and a rollout in progress or
    interrupted."""
    from mlops.backends.local.gateway import describe_endpoint
    from mlops.rollout.lock import rollout_status

    settings = _settings()
    state = describe_endpoint(settings, name)
    rollout = rollout_status(settings.endpoints_dir, name)
    if as_json:
        data = state.model_dump(mode="json")
        data["rollout"] = (
            {**rollout.note.model_dump(mode="json"), "interrupted": rollout.interrupted}
            if rollout
            else None
        )
        out.print_json(json.dumps(data))
        return
    _print_state(state)
    if rollout is None:
        return
    line = rollout.note.summary(state, interrupted=rollout.interrupted)
    if rollout.interrupted:
        out.print(f"[red]{escape(line)}[/]", highlight=False)
        out.print(
            f"  its process (pid {rollout.note.pid} on {rollout.note.host}) is gone: "
            f"`mlops endpoint rollback {name}` puts all traffic back on "
            f"{rollout.note.blue or 'blue'}, `mlops endpoint resume {name}` finishes it",
            highlight=False,
            markup=False,
        )
    else:
        holder = rollout.holder.describe() if rollout.holder else ""
        out.print(f"[yellow]{escape(line)}[/]", highlight=False)
        out.print(f"  held by {holder}", highlight=False, markup=False)


@endpoint_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Every local endpoint with its status (a damaged one too, marked so)."""
    from mlops.backends.local.gateway import list_endpoints
    from mlops.backends.local.gateway.state import damaged_endpoints

    settings = _settings()
    states = list_endpoints(settings)
    damaged = damaged_endpoints(settings.endpoints_dir)
    if as_json:
        rows = [s.model_dump(mode="json") for s in states]
        rows += [{"name": n, "status": "Damaged", "error": e} for n, e in damaged.items()]
        out.print_json(json.dumps(rows))
        return
    if not states and not damaged:
        out.print("no endpoints yet; create one with `mlops endpoint create NAME --model REF`")
        return
    table = Table("endpoint", "status", "url", "variants (weight)", "updated")
    for s in states:
        variants = ", ".join(
            f"{v.name} (shadow)" if v.shadow else f"{v.name} ({v.weight:g})" for v in s.variants
        )
        table.add_row(
            escape(s.name), _status(s.status), escape(s.url), escape(variants), escape(s.updated_at)
        )
    for damaged_name in damaged:
        table.add_row(
            escape(damaged_name),
            "[red]Damaged[/]",
            "-",
            escape(f"state file unreadable: `mlops endpoint delete {damaged_name} --force`"),
            "-",
        )
    out.print(table)


@endpoint_app.command("update-weights")
def update_weights(
    name: Annotated[str, typer.Argument(help="endpoint name")],
    weights: Annotated[list[str], typer.Argument(help="VARIANT=WEIGHT pairs, e.g. v3=90 v4=10")],
) -> None:
    """Change the traffic weights of variants at once (others keep theirs)."""
    from mlops.backends import get_endpoint_backend

    parsed: dict[str, float] = {}
    for pair in weights:
        key, sep, value = pair.partition("=")
        try:
            parsed[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise ConfigError(f"{pair!r} is not VARIANT=WEIGHT; write e.g. v3=90 v4=10")
    with get_endpoint_backend(_settings()) as backend:
        backend.set_weights(name, parsed)
        state = backend.describe_endpoint(name)
    total = sum(v.weight for v in state.variants if not v.shadow)
    shares = [
        f"{v.name}=shadow"
        if v.shadow
        else f"{v.name}={v.weight:g} ({100 * v.weight / total if total else 0:.0f}%)"
        for v in state.variants
    ]
    out.print(f"{name}: " + "  ".join(shares), markup=False)


@endpoint_app.command("update")
def update(
    name: Annotated[str, typer.Argument(help="endpoint name")],
    model: Annotated[str, typer.Option("--model", help="registered version: NAME/VERSION")],
    routing: Annotated[str, typer.Option(help="ALL_AT_ONCE, CANARY or LINEAR")] = "CANARY",
    canary_size: Annotated[float | None, typer.Option(help="percent on green (CANARY)")] = None,
    linear_step: Annotated[float | None, typer.Option(help="percent per step (LINEAR)")] = None,
    bake: Annotated[float | None, typer.Option(help="seconds of bake after each shift")] = None,
    termination_wait: Annotated[float | None, typer.Option(help="seconds before blue goes")] = None,
    require_traffic: Annotated[
        bool,
        typer.Option(help="the post-traffic hook demands live requests on green"),
    ] = True,
    allow_code: Annotated[
        bool,
        typer.Option(
            "--allow-code",
            help="let this endpoint serve models that run code (kept for later updates)",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the requests it would send; change nothing")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Blue/green update of an endpoint to another registered version, with auto-rollback.

    Like UpdateEndpoint with a DeploymentConfig. Unlike `mlops deploy`, it does not ask for
    approval and does not move the champion alias: use it for endpoints other than prod.
    """
    from flows.cli.deploy import show_rollout
    from mlops.stages.deploy import deploy_to_endpoint

    model_name, sep, version = model.partition("/")
    if not sep or not version.isdigit():
        raise ConfigError(f"--model {model!r} is not NAME/VERSION; write e.g. --model taxi/3")
    settings = _settings()
    if allow_code and not dry_run:
        from mlops.backends.local.gateway.model_policy import allow_code as allow_model_code

        allow_model_code(settings, name)
    policy = settings.rollout.policy(
        traffic_routing=routing.upper(),
        canary_size=canary_size,
        linear_step=linear_step,
        wait_interval_s=bake,
        termination_wait_s=termination_wait,
    )
    if dry_run:
        from mlops.backends import VariantSpec
        from mlops.rollout import variant_name_for

        green = VariantSpec(variant_name_for(version), f"models:/{model_name}/{version}")
        _print_plan(settings, name, green=green, policy=policy, as_json=as_json)
        return
    result = deploy_to_endpoint(
        settings,
        model_name=model_name,
        version=version,
        endpoint=name,
        policy=policy,
        require_live_traffic=require_traffic,
    )
    if as_json:
        out.print_json(result.model_dump_json())
    else:
        show_rollout(result, settings)
    if not result.completed:
        raise EndpointError(f"update of {name} rolled back: {result.reason}")


@endpoint_app.command("add-variant")
def add_variant(
    name: Annotated[str, typer.Argument(help="endpoint name")],
    variant: Annotated[str, typer.Argument(help="new variant's name, e.g. v4")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="models:/NAME/VERSION or NAME@ALIAS")
    ] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option(help="a local MLflow model folder (recorded as one you chose)"),
    ] = None,
    weight: Annotated[float, typer.Option(min=0, help="traffic weight; 0: target only")] = 0.0,
    shadow: Annotated[bool, typer.Option(help="gets a copy of each request instead")] = False,
) -> None:
    """Start another variant on a running endpoint (from the registry or a folder)."""
    from mlops.backends.local.gateway.manager import add_variant as add

    with out.status(f"starting variant {variant} on {name}…"):
        added = add(
            _settings(),
            name,
            variant,
            model_ref=model,
            model_dir=model_dir,
            weight=weight,
            shadow=shadow,
        )
    out.print(
        f"{escape(name)}: variant {escape(added.name)} {_status(added.status)} on port {added.port}"
    )


@endpoint_app.command("remove-variant")
def remove_variant(
    name: Annotated[str, typer.Argument(help="endpoint name")],
    variant: Annotated[str, typer.Argument(help="variant to stop and remove")],
) -> None:
    """Take a variant out of routing and stop its model server (capture flushed)."""
    from mlops.backends import get_endpoint_backend

    with get_endpoint_backend(_settings()) as backend:
        backend.remove_variant(name, variant)
    out.print(f"{name}: removed variant {variant}", markup=False)


@endpoint_app.command("start")
def start(name: Annotated[str, typer.Argument(help="endpoint name")]) -> None:
    """Start a stopped endpoint again from its saved state."""
    from mlops.backends.local.gateway import start_endpoint

    with out.status(f"starting endpoint {name}…"):
        state = start_endpoint(_settings(), name)
    _print_state(state)


@endpoint_app.command("stop")
def stop(name: Annotated[str, typer.Argument(help="endpoint name")]) -> None:
    """Stop the gateway and its variants (capture flushed); `start` brings it back."""
    from mlops.backends import EndpointProcesses, get_endpoint_backend

    with get_endpoint_backend(_settings()) as backend, out.status(f"stopping endpoint {name}…"):
        if not isinstance(backend, EndpointProcesses):
            raise EndpointError(
                f"endpoints of the {backend.name} backend do not run on this machine, so they "
                f"cannot be stopped here; `mlops endpoint delete {name}` removes one"
            )
        state = backend.stop_endpoint(name)
    out.print(
        f"{escape(name)}: {_status(state.status)}; start it again with "
        + escape(f"`mlops endpoint start {name}`")
    )


@endpoint_app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="endpoint name")],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="also when the state file is damaged: stop the gateway and model servers "
            "found running for this endpoint",
        ),
    ] = False,
) -> None:
    """Stop the endpoint and remove its state (captured data stays)."""
    from mlops.backends.local.gateway import delete_endpoint

    with out.status(f"deleting endpoint {name}…"):
        delete_endpoint(_settings(), name, force=force)
    out.print(f"deleted endpoint {name}", markup=False)


@endpoint_app.command("rollback")
def rollback(name: Annotated[str, typer.Argument(help="endpoint name")]) -> None:
    """Undo an interrupted rollout: all traffic back on blue, green removed, record marked."""
    from mlops.stages.recover import rollback_rollout

    with out.status(f"rolling {name} back to blue…"):
        result = rollback_rollout(_settings(), name)
    out.print(f"[green]{escape(result.summary())}[/]", highlight=False)


@endpoint_app.command("resume")
def resume(name: Annotated[str, typer.Argument(help="endpoint name")]) -> None:
    """Finish an interrupted rollout from the step it was in, with its recorded policy.

    Green is smoke-tested again, the interrupted step's shift and full bake run again from
    the current split, then the remaining steps; any alarm rolls back as usual.
    """
    from flows.cli.deploy import show_rollout
    from mlops.stages.recover import resume_rollout

    settings = _settings()
    result = resume_rollout(settings, name)
    show_rollout(result, settings)
    if not result.completed:
        raise EndpointError(f"resumed rollout of {name} rolled back: {result.reason}")


@endpoint_app.command("invoke")
def invoke(
    name: Annotated[str, typer.Argument(help="endpoint name")],
    body: Annotated[str, typer.Option(help="request body, e.g. '12,1,2.5'; @PATH reads a file")],
    content_type: Annotated[str, typer.Option(help="text/csv or application/json")] = "text/csv",
    accept: Annotated[str | None, typer.Option(help="answer format")] = None,
    target_variant: Annotated[str | None, typer.Option(help="send to this variant")] = None,
    inference_id: Annotated[str | None, typer.Option(help="id recorded with capture")] = None,
) -> None:
    """Send one request to the endpoint and print the answer."""
    from mlops.backends import get_endpoint_backend

    if body.startswith("@"):
        path = Path(body[1:])
        if not path.is_file():
            raise ConfigError(f"--body {body}: {path} is not a file")
        data = path.read_bytes()
    else:
        data = body.encode()
    with get_endpoint_backend(_settings()) as backend:
        result = backend.invoke(
            name,
            data,
            content_type=content_type,
            accept=accept,
            target_variant=target_variant,
            inference_id=inference_id,
        )
    colour = "green" if result.ok else "red"
    out.print(
        f"[{colour}]{result.status}[/] "
        + escape(
            f"variant={result.variant or '-'} {result.content_type} {result.latency_ms:.1f} ms"
        ),
        highlight=False,
    )
    out.print(result.text, highlight=False, markup=False)
    if not result.ok:
        raise EndpointError(f"endpoint {name!r} answered HTTP {result.status}")
