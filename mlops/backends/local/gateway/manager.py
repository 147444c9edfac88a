"""Create, describe, list, start, stop and delete local endpoints.

An endpoint is a gateway process on loopback (``python -m mlops.backends.local.gateway``) that
hosts ``instance_count`` model servers per variant (scaled by the gateway when the endpoint
is created with ``[autoscaling] enabled``). Its state lives in ``<settings.endpoints_dir>/<name>/``:
``endpoint.json`` (what to run), ``gateway.log`` and ``variants/<variant>.log``, and the
owner's files: ``admin.token`` (mode 0600, the admin API's credential, created before the
gateway starts) and ``model_policy.json`` (which models the admin API may load). Model
artifacts are downloaded when a variant is created, so an endpoint starts again without the
tracking server.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mlops.backends.endpoint import VariantSpec
from mlops.backends.local.gateway.admin_auth import ensure_token
from mlops.backends.local.gateway.client import EndpointClient
from mlops.backends.local.gateway.model_policy import (
    ModelPolicy,
    allow_folder,
    check_code,
    save_policy,
)
from mlops.backends.local.gateway.processes import (
    find_free_port,
    find_processes,
    is_process_of,
    log_tail,
    pid_alive,
    port_is_free,
    terminate_process,
)
from mlops.backends.local.gateway.state import (
    MAX_LOCAL_INSTANCES,
    STATE_FILE,
    AutoscalingState,
    CaptureState,
    EndpointState,
    VariantState,
    endpoint_dir,
    load_state,
    resolve_model_dir,
    save_state,
    validate_name,
)
from mlops.errors import EndpointError, EndpointNotFoundError

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = [
    "VariantSpec",
    "add_variant",
    "create_endpoint",
    "delete_endpoint",
    "describe_endpoint",
    "endpoint_url",
    "list_endpoints",
    "remove_variant",
    "start_endpoint",
    "stop_endpoint",
]

READY_TIMEOUT_S = 300.0
SHUTDOWN_TIMEOUT_S = 60.0


def _check_specs(name: str, variants: list[VariantSpec]) -> None:
    validate_name(name, "endpoint")
    if not variants:
        raise EndpointError(
            f"endpoint {name!r} needs at least one variant, e.g. "
            "VariantSpec('v1', 'models:/taxi/1') or `--model models:/taxi/1`"
        )
    seen: set[str] = set()
    for spec in variants:
        validate_name(spec.name, "variant")
        if spec.name in seen:
            raise EndpointError(f"variant name {spec.name!r} is used twice; names must differ")
        seen.add(spec.name)
        if not (math.isfinite(spec.initial_weight) and spec.initial_weight >= 0):
            raise EndpointError(
                f"variant {spec.name!r} has weight {spec.initial_weight}; use a finite number "
                ">= 0"
            )
        if not (
            isinstance(spec.instance_count, int) and 1 <= spec.instance_count <= MAX_LOCAL_INSTANCES
        ):
            raise EndpointError(
                f"variant {spec.name!r} asks for {spec.instance_count!r} instances; a local "
                f"variant runs 1 to {MAX_LOCAL_INSTANCES} model-server processes: set "
                "instance_count within those bounds"
            )
    if sum(1 for s in variants if s.shadow) > 1:
        raise EndpointError(f"endpoint {name!r} may have one shadow variant at most")
    if not any(not s.shadow and s.initial_weight > 0 for s in variants):
        raise EndpointError(
            f"endpoint {name!r} needs a production (non-shadow) variant with weight > 0 "
            "to take traffic"
        )


def create_endpoint(
    settings: Settings,
    name: str,
    variants: list[VariantSpec],
    *,
    capture: bool | None = None,
    capture_destination: str | None = None,
    sampling: int | None = None,
    port: int | None = None,
    allow_code: bool = False,
    wait: bool = True,
) -> EndpointState:
    """Download the variants' models and start the endpoint's gateway on loopback.

    Args:
        settings: settings of the tracking store and work dir.
        name: endpoint name, e.g. ``taxi-dev``.
        variants: the variants to host.
        capture: capture requests and answers; default ``settings.serving.capture.enabled``.
        capture_destination: folder or ``s3://`` URI; default ``settings.capture_destination``.
        sampling: percentage of requests captured; default from the settings.
        port: the gateway's port; default a free one.
        allow_code: serve models that run code when they load (models-from-code, a
            ``python_model``, a custom ``loader_module``); recorded in the endpoint's model
            policy, so later variants may run code too. Off: such models are refused.
        wait: wait until the endpoint is InService.

    Returns:
        The endpoint's state (InService when ``wait``, else Creating).

    Raises:
        EndpointError: invalid names or weights, an existing endpoint, a taken port, or a
            gateway or variant that failed to start (nothing is left behind then).
        ModelNotFoundError: a model reference does not exist.
        ModelNotAllowedError: a model runs code and ``allow_code`` is off.
    """
    _check_specs(name, variants)
    root = settings.endpoints_dir
    folder = endpoint_dir(root, name)
    if (folder / STATE_FILE).exists():
        raise EndpointError(
            f"endpoint {name!r} already exists; change it with `mlops endpoint update-weights "
            f"{name} ...`, or remove it with `mlops endpoint delete {name}` first"
        )
    if sampling is None:
        sampling = settings.serving.capture.sampling_percentage
    if not 0 <= sampling <= 100:
        raise EndpointError(f"sampling {sampling} must be a percentage between 0 and 100")
    if port is not None and not port_is_free(port):
        raise EndpointError(
            f"port {port} on 127.0.0.1 is taken; pick another or leave it out to use a free one"
        )
    policy = ModelPolicy(allow_code=allow_code)
    scaling = _autoscaling(settings)
    states = []
    for spec in variants:  # downloads; fails before anything is written
        model_dir, model_name, version = resolve_model_dir(settings, spec.model_ref)
        check_code(model_dir, policy, name)
        states.append(VariantState(
            name=spec.name, model_ref=spec.model_ref, model_name=model_name,
            model_version=version, model_dir=model_dir, weight=spec.initial_weight,
            shadow=spec.shadow,
            instance_count=scaling.clamp(spec.instance_count) if scaling else spec.instance_count,
        ))  # fmt: skip
    enabled = settings.serving.capture.enabled if capture is None else capture
    port = port or find_free_port()
    state = EndpointState(
        name=name,
        port=port,
        admin_port=_free_port_besides(port),
        status="Creating",
        capture=CaptureState(
            enabled=enabled,
            destination=capture_destination or settings.capture_destination,
            sampling_percentage=sampling,
        ),
        variants=states,
        autoscaling=scaling,
    )
    save_state(root, state)
    pid = None
    try:
        ensure_token(folder)
        save_policy(folder, policy)
        pid = _spawn_gateway(settings, name)
        if not wait:
            return load_state(root, name)
        return _wait_in_service(settings, name, pid)
    except BaseException:
        if pid is not None and pid_alive(pid):
            terminate_process(pid, grace_s=SHUTDOWN_TIMEOUT_S)  # it stops its variants
        _teardown(settings, name)
        shutil.rmtree(folder, ignore_errors=True)
        raise


def describe_endpoint(settings: Settings, name: str) -> EndpointState:
    """The endpoint's state, live from its gateway when it runs.

    A stopped gateway shows as ``OutOfService``, its variants as ``Failed`` unless their
    processes still run.

    Raises:
        EndpointNotFoundError: no such endpoint.
    """
    state = load_state(settings.endpoints_dir, name)
    if _gateway_running(state):
        try:
            with EndpointClient.for_state(settings, state) as client:
                return client.state()
        except EndpointError:
            return state  # starting up or busy: the file is the best we know
    state.status = "OutOfService"
    for v in state.variants:
        for i in v.instances:
            if not is_process_of(i.pid, "mlops.serving", str(i.port)):
                i.status = "Failed"
                i.failure_reason = "not running: the endpoint's gateway is stopped"
        if not any(i.status == "InService" for i in v.instances):
            v.status = "Failed"
            v.failure_reason = "not running: the endpoint's gateway is stopped"
    return state


def list_endpoints(settings: Settings) -> list[EndpointState]:
    """Every endpoint under ``settings.endpoints_dir``, described live, by name."""
    root = settings.endpoints_dir
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.glob(f"*/{STATE_FILE}")):
        try:
            found.append(describe_endpoint(settings, path.parent.name))
        except EndpointError:
            continue  # deleted meanwhile or unreadable; `describe` names the problem
    return found


def start_endpoint(settings: Settings, name: str, *, wait: bool = True) -> EndpointState:
    """Start a stopped endpoint's gateway again from its state (same port when free).

    Variants still running from before are adopted; the others are started on their ports.
    An endpoint saved by an older version gets an admin port and token here.

    Raises:
        EndpointNotFoundError: no such endpoint.
        EndpointError: the gateway did not start, or a variant failed (the gateway keeps
            running and retries it; ``stop_endpoint`` stops it), or the admin token file
            is not the owner's alone.
    """
    root = settings.endpoints_dir
    state = load_state(root, name)
    if _gateway_running(state):
        return describe_endpoint(settings, name)
    # A gateway that was just killed may hold its port for a moment while the kernel
    # tears its sockets down: wait a little before giving the endpoint a new address.
    deadline = time.monotonic() + 5.0
    while not port_is_free(state.port) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not port_is_free(state.port):
        state.port = find_free_port()
    admin = state.admin_port
    if admin is None or admin == state.port or not port_is_free(admin):
        state.admin_port = _free_port_besides(state.port)
    state.gateway_pid = None
    ensure_token(endpoint_dir(root, name))
    save_state(root, state)
    pid = _spawn_gateway(settings, name)
    if not wait:
        return load_state(root, name)
    return _wait_in_service(settings, name, pid, creating=False)


def stop_endpoint(settings: Settings, name: str) -> EndpointState:
    """Stop the gateway and its variants (capture flushed); the state stays for a restart.

    Raises:
        EndpointNotFoundError: no such endpoint.
    """
    load_state(settings.endpoints_dir, name)
    _teardown(settings, name)
    return describe_endpoint(settings, name)


def delete_endpoint(settings: Settings, name: str, *, force: bool = False) -> None:
    """Stop the gateway and its variants and remove the endpoint's state and logs.

    Captured data stays where it was written. With ``force`` a damaged or missing state
    file does not stop it: besides what the state names (when it can be read), the gateway
    and model servers found running for this endpoint of this work dir are stopped (see
    :func:`_stop_found`), then the folder is removed.

    Raises:
        EndpointNotFoundError: no such endpoint (with ``force``: no folder and no process).
        EndpointStateError: the state file is damaged and ``force`` is not given.
    """
    folder = endpoint_dir(settings.endpoints_dir, name)
    try:
        load_state(settings.endpoints_dir, name)
    except EndpointError:
        if not force:
            raise
        stopped = _stop_found(settings, name)
        if not stopped and not folder.is_dir():
            raise
    else:
        _teardown(settings, name, delete=True)
        if force:
            _stop_found(settings, name)
    shutil.rmtree(folder, ignore_errors=True)


def endpoint_url(settings: Settings, name: str) -> str:
    """The gateway's base URL, e.g. ``http://127.0.0.1:8765`` (``/invocations`` below it).

    Raises:
        EndpointNotFoundError: no such endpoint.
    """
    return load_state(settings.endpoints_dir, name).url


def add_variant(
    settings: Settings,
    name: str,
    variant: str,
    *,
    model_ref: str | None = None,
    model_dir: str | Path | None = None,
    weight: float = 0.0,
    shadow: bool = False,
    instance_count: int = 1,
) -> VariantState:
    """Start a new variant on a running endpoint, as its owner.

    A ``model_dir`` is first recorded in the endpoint's model policy as a folder its owner
    chose: the admin API starts variants only from such folders or from the registry.

    Args:
        settings: settings of the endpoints folder.
        name: the endpoint.
        variant: the new variant's name, e.g. ``v4``.
        model_ref: ``models:/NAME/VERSION`` or ``NAME@ALIAS``; or
        model_dir: a local MLflow model folder.
        weight: its traffic weight (0: only reachable with a target-variant header).
        shadow: it gets a copy of each request instead.
        instance_count: its model-server processes (within the endpoint's autoscaling
            bounds, when it scales).

    Raises:
        EndpointNotFoundError: no such endpoint.
        ModelNotFoundError: the model reference does not exist.
        EndpointError: the variant could not be added (the message says why).
    """
    if (model_ref is None) == (model_dir is None):
        raise EndpointError(
            f"variant {variant!r}: give exactly one of a model reference (--model "
            "models:/taxi/3) or a model folder (--model-dir DIR)"
        )
    folder = None if model_dir is None else allow_folder(settings, name, model_dir)
    with EndpointClient.for_endpoint(settings, name) as client:
        return client.add_variant(
            variant,
            model_ref,
            model_dir=folder,
            weight=weight,
            shadow=shadow,
            instance_count=instance_count,
        )


def remove_variant(settings: Settings, name: str, variant: str) -> None:
    """Take a variant out of routing and stop its model server (capture flushed).

    Raises:
        EndpointNotFoundError: no such endpoint.
        EndpointError: no such variant, or the gateway is not running.
    """
    with EndpointClient.for_endpoint(settings, name) as client:
        client.remove_variant(variant)


# --------------------------------------------------------------------------- internals


def _free_port_besides(taken: int) -> int:
    """A free loopback port other than ``taken`` (the admin port beside the invocations')."""
    while (port := find_free_port()) == taken:
        continue
    return port


def _autoscaling(settings: Settings) -> AutoscalingState | None:
    """The endpoint's scaling policy from ``[autoscaling]`` (``None`` when it is off)."""
    scaling = settings.autoscaling
    if not scaling.enabled:
        return None
    return AutoscalingState(
        min_instances=scaling.min_instances,
        max_instances=scaling.max_instances,
        target_invocations_per_instance=scaling.target_invocations_per_instance,
        scale_out_cooldown_s=scaling.scale_out_cooldown_s,
        scale_in_cooldown_s=scaling.scale_in_cooldown_s,
        evaluation_period_s=scaling.evaluation_period_s,
    )


def _gateway_running(state: EndpointState) -> bool:
    return is_process_of(state.gateway_pid, "mlops.backends.local.gateway", state.name)


def _gateway_env(settings: Settings) -> dict[str, str]:
    """The environment that carries these settings to the gateway and its model servers."""
    # The JSON tables below carry the effective values; stale nested variables must not mix in.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_SERVING__", "MLOPS_AWS__"))
    }
    env["MLOPS_WORK_DIR"] = str(settings.work_dir.resolve())
    env["MLOPS_TRACKING_URI"] = settings.effective_tracking_uri
    # always, so a MLFLOW_REGISTRY_URI this process inherited cannot point them elsewhere
    env["MLOPS_REGISTRY_URI"] = settings.effective_registry_uri
    env["MLOPS_SERVING"] = json.dumps(settings.serving.model_dump(mode="json"))
    env["MLOPS_AWS"] = json.dumps(settings.aws.model_dump(mode="json"))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn_gateway(settings: Settings, name: str) -> int:
    """Start the gateway detached (not our child, own session); return its pid."""
    folder = endpoint_dir(settings.endpoints_dir, name)
    log = folder / "gateway.log"
    with log.open("ab") as fh:
        fh.write(f"\n--- starting gateway of endpoint {name}\n".encode())
    command = [sys.executable, "-m", "mlops.backends.local.gateway", "--endpoint", name]
    # A short-lived launcher starts it, so the gateway is re-parented to init: a long-lived
    # caller (a Prefect worker, a test session) collects no zombie when it exits.
    launched = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(log), *command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=_gateway_env(settings),
        check=False,
    )
    try:
        return int(launched.stdout.decode().strip())
    except ValueError:
        raise EndpointError(
            f"could not start the gateway of endpoint {name!r}: "
            f"{launched.stderr.decode(errors='replace')[-2000:]}"
        ) from None


_LAUNCHER = """\
import subprocess, sys
with open(sys.argv[1], "ab") as log:
    proc = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
print(proc.pid)
"""


def _wait_in_service(
    settings: Settings, name: str, pid: int, *, creating: bool = True
) -> EndpointState:
    folder = endpoint_dir(settings.endpoints_dir, name)
    log = folder / "gateway.log"
    state = load_state(settings.endpoints_dir, name)
    deadline = time.monotonic() + READY_TIMEOUT_S
    with EndpointClient.for_state(settings, state) as client:
        while True:
            if not pid_alive(pid):
                raise EndpointError(
                    f"the gateway of endpoint {name!r} (pid {pid}) exited "
                    f"before it was InService. Last lines of {log}:\n{log_tail(log)}"
                )
            live: EndpointState | None = None
            if client.ping():
                try:
                    live = client.state()
                except EndpointError:
                    live = None
            if live is not None and live.gateway_pid == pid:
                if live.status == "InService":
                    return live
                if live.status == "Failed":
                    hint = (
                        "nothing was kept; fix the model or its folder and create it again"
                        if creating
                        else f"the gateway keeps retrying; stop it with `mlops endpoint stop "
                        f"{name}`"
                    )
                    raise EndpointError(
                        f"endpoint {name!r} failed to start: {live.last_error}; {hint}"
                    )
            if time.monotonic() > deadline:
                raise EndpointError(
                    f"endpoint {name!r} was not InService after {READY_TIMEOUT_S:.0f} s. "
                    f"Last lines of {log}:\n{log_tail(log)}"
                )
            time.sleep(0.25)


def _teardown(settings: Settings, name: str, *, delete: bool = False) -> None:
    """Stop the gateway (it stops its variants), then any variant process left over."""
    root = settings.endpoints_dir
    try:
        state = load_state(root, name)
    except EndpointNotFoundError:
        return
    pid = state.gateway_pid
    if _gateway_running(state):
        assert pid is not None
        try:
            with EndpointClient.for_state(settings, state) as client:
                client.shutdown(delete=delete)
        except EndpointError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # uvicorn shuts down and stops the variants too
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            terminate_process(pid, grace_s=5.0)
    try:
        state = load_state(root, name)  # the gateway's last word: pids of variants it ran
    except EndpointError:
        pass
    for i in (i for v in state.variants for i in v.instances):
        if i.pid and is_process_of(i.pid, "mlops.serving", str(i.port)):
            terminate_process(i.pid)


def _stop_found(settings: Settings, name: str) -> list[int]:
    """Stop the processes running for endpoint ``name`` of this work dir; return their pids.

    Found by their command lines (the gateway: ``-m mlops.backends.local.gateway --endpoint
    NAME``; a model server: ``-m mlops.serving ... --endpoint-name NAME``) and by
    ``MLOPS_WORK_DIR`` in their environment, so a same-named endpoint of another project is
    left alone.
    """
    env = {"MLOPS_WORK_DIR": str(settings.work_dir.resolve())}

    def after(args: list[str], flag: str) -> str | None:
        return args[args.index(flag) + 1] if flag in args[:-1] else None

    gateways = find_processes(
        lambda a: "mlops.backends.local.gateway" in a and after(a, "--endpoint") == name, env=env
    )
    for pid in gateways:  # a gateway stops its model servers as it shuts down
        terminate_process(pid, grace_s=SHUTDOWN_TIMEOUT_S)
    servers = find_processes(
        lambda a: "mlops.serving" in a and after(a, "--endpoint-name") == name, env=env
    )
    for pid in servers:
        terminate_process(pid)
    return gateways + servers
