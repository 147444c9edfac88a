"""The admin API of a gateway: variants, weights, metrics, state, shutdown.

Used by the rollout controller and :class:`~mlops.backends.local.gateway.client.EndpointClient`:
``GET /admin/state``, ``POST /admin/variants``, ``DELETE /admin/variants/{name}``,
``PUT /admin/weights``, ``GET /admin/metrics?since=T``, ``POST /admin/shutdown``, and the
model-signal pairing of a rollout (:mod:`.pairing`): ``PUT /admin/pairing``
switches it on for a green and a blue, ``GET /admin/pairing?after=N`` reads its counts and
the (green, blue) prediction pairs numbered above ``N``, ``DELETE /admin/pairing`` ends it.

It listens on a loopback port of its own (``admin_port`` in the state file), never on the
invocations port, and answers only the endpoint's owner (:mod:`.admin_auth`:
token, no Origin, JSON bodies). ``POST /admin/variants`` loads only what the owner allowed
(:mod:`.model_policy`): registry references, folders the owner chose, and
models that run code only when the owner opted in.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field

from mlops.backends.local.gateway.admin_auth import check_admin_request
from mlops.backends.local.gateway.asgi import HttpError, Receive, Scope, Send, read_json, send_json
from mlops.backends.local.gateway.model_policy import (
    ModelNotAllowedError,
    load_policy,
    resolve_variant_model,
)
from mlops.backends.local.gateway.pairing import Pairing, PairingConfig, mirror_token
from mlops.backends.local.gateway.state import MAX_LOCAL_INSTANCES, VariantState, validate_name
from mlops.backends.local.gateway.variants import Variant, live_states
from mlops.errors import EndpointError, MlopsError, ModelNotFoundError

if TYPE_CHECKING:
    from pathlib import Path

    from mlops.backends.local.gateway.routing import Router
    from mlops.backends.local.gateway.state import EndpointState
    from mlops.backends.local.gateway.supervision import Supervisor
    from mlops.settings import Settings

__all__ = ["AddVariantRequest", "AdminApi", "WeightsRequest"]


class AddVariantRequest(BaseModel):
    """Body of ``POST /admin/variants``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str
    model_ref: str | None = Field(None, description="models:/NAME/VERSION or NAME@ALIAS")
    model_dir: str | None = Field(None, description="a folder the endpoint's owner chose")
    weight: float = Field(0.0, ge=0)
    shadow: bool = False
    instance_count: int = Field(1, ge=1, le=MAX_LOCAL_INSTANCES)


class WeightsRequest(BaseModel):
    """Body of ``PUT /admin/weights``: new weights of some or all variants."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float]


class AdminApi:
    """The ASGI app of the admin API.

    Args:
        settings: settings of the gateway (the tracking store resolves model references).
        endpoint: the endpoint's state (``admin_port``: the port this app answers on).
        folder: the endpoint's folder (its model policy file).
        token: the admin token every request must carry.
        variants: the gateway's variants by name, changed here.
        router: rebuilt after each change of variants or weights.
        supervisor: starts and stops variants' servers.
        persist: saves the state file.
        request_exit: asks the server to shut down.
    """

    def __init__(
        self,
        settings: Settings,
        endpoint: EndpointState,
        folder: Path,
        token: str,
        variants: dict[str, Variant],
        router: Router,
        supervisor: Supervisor,
        persist: Callable[[], None],
        request_exit: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.folder = folder
        self._token = token
        self.variants = variants
        self.router = router
        self.supervisor = supervisor
        self.persist = persist
        self.request_exit = request_exit
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            check_admin_request(scope, token=self._token, port=self.endpoint.admin_port)
            await self._route(scope, receive, send)
        except HttpError as exc:
            await send_json(send, exc.status, {"error": exc.message}, exc.headers)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        if path == "/admin/state" and method == "GET":
            self.endpoint.variants = live_states(self.variants.values())
            await send_json(send, 200, self.endpoint.model_dump(mode="json"))
        elif path == "/admin/metrics" and method == "GET":
            query = parse_qs(scope.get("query_string", b"").decode())
            try:
                since = float(query.get("since", ["0"])[0])
            except ValueError:
                raise HttpError(
                    400, "since must be a unix time in seconds, e.g. since=1717171717.5"
                ) from None
            await send_json(send, 200, self.metrics(since))
        elif path == "/admin/variants" and method == "POST":
            body = await read_json(receive, AddVariantRequest)
            async with self._lock:
                state = await self.add_variant(body)
            await send_json(send, 201, state.model_dump(mode="json"))
        elif path.startswith("/admin/variants/") and method == "DELETE":
            name = path[len("/admin/variants/") :]
            async with self._lock:
                await self.remove_variant(name)
            await send_json(send, 200, {"removed": name})
        elif path == "/admin/weights" and method == "PUT":
            body = await read_json(receive, WeightsRequest)
            async with self._lock:
                self.set_weights(body.weights)
            await send_json(send, 200, {
                "weights": {n: v.state.weight for n, v in self.variants.items() if not v.removed}
            })  # fmt: skip
        elif path == "/admin/pairing":
            await self._pairing_route(scope, receive, send)
        elif path == "/admin/shutdown" and method == "POST":
            query = parse_qs(scope.get("query_string", b"").decode())
            if query.get("delete", ["false"])[0] == "true":
                self.endpoint.status = "Deleting"
                self.persist()
            await send_json(send, 202, {"status": "stopping"})
            self.request_exit()
        else:
            raise HttpError(404, f"no admin route {method} {path}")

    async def _pairing_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "PUT":
            config = await read_json(receive, PairingConfig)
            async with self._lock:
                pairing = await self.start_pairing(config)
            await send_json(send, 200, pairing.summary())
        elif method == "GET":
            query = parse_qs(scope.get("query_string", b"").decode())
            try:
                after = int(query.get("after", ["0"])[0])
            except ValueError:
                raise HttpError(400, "after must be a whole number, e.g. after=0") from None
            pairing = self.router.pairing
            await send_json(send, 200, pairing.summary(after) if pairing else {"active": False})
        elif method == "DELETE":
            async with self._lock:
                ended = await self.stop_pairing()
            await send_json(send, 200, {**(ended or {}), "active": False})
        else:
            raise HttpError(404, f"no admin route {method} /admin/pairing")

    # ------------------------------------------------------------------ operations

    def metrics(self, since: float) -> dict[str, Any]:
        """Per-variant metrics over events at or after ``since`` (unix time)."""
        return {
            "now": time.time(),
            "variants": {
                name: v.metrics.summary(since) for name, v in self.variants.items() if not v.removed
            },
        }

    async def add_variant(self, req: AddVariantRequest) -> VariantState:
        """Start a new variant (weight as asked) and route to it once it serves.

        Raises:
            HttpError: 400 invalid, 403 a folder the owner did not choose, 404 unknown
                model, 409 name or shadow taken, 422 a model that runs code where the owner
                did not allow code, 500 the server did not start.
        """
        try:
            validate_name(req.name, "variant")
        except EndpointError as exc:
            raise HttpError(400, str(exc)) from None
        existing = self.variants.get(req.name)
        if existing is not None and not existing.removed:
            raise HttpError(
                409,
                f"variant {req.name!r} already exists on endpoint "
                f"{self.endpoint.name!r}; remove it first or pick another name",
            )
        shadow = next(
            (n for n, v in self.variants.items() if v.state.shadow and not v.removed), None
        )
        if req.shadow and shadow is not None:
            raise HttpError(
                409,
                f"endpoint {self.endpoint.name!r} already has shadow variant "
                f"{shadow!r}; remove it first (one shadow at most)",
            )
        try:
            policy = load_policy(self.folder)
        except EndpointError as exc:
            raise HttpError(403, str(exc)) from None
        try:
            model_dir, model_name, model_version = await asyncio.to_thread(
                resolve_variant_model,
                self.settings,
                policy,
                self.endpoint.name,
                model_ref=req.model_ref,
                model_dir=req.model_dir,
            )
        except ModelNotAllowedError as exc:
            raise HttpError(422 if exc.runs_code else 403, str(exc)) from None
        except ModelNotFoundError as exc:
            raise HttpError(404, str(exc)) from None
        except MlopsError as exc:
            raise HttpError(400, str(exc)) from None
        variant = Variant(VariantState(
            name=req.name, model_ref=req.model_ref, model_name=model_name,
            model_version=model_version, model_dir=model_dir, weight=req.weight,
            shadow=req.shadow, instance_count=self._instances(req.instance_count),
        ))  # fmt: skip
        previous = self.endpoint.status
        if previous == "InService":
            self.endpoint.status = "Updating"
        try:
            await self.supervisor.start_new(variant)
        except EndpointError as exc:
            raise HttpError(500, str(exc)) from None
        finally:
            self.endpoint.status = previous
        self.variants[req.name] = variant
        self.router.rebuild()
        self.persist()
        return variant.state

    def _instances(self, asked: int) -> int:
        """The instance count to start a variant with: within the autoscaling bounds."""
        policy = self.endpoint.autoscaling
        return policy.clamp(asked) if policy is not None and policy.enabled else asked

    async def start_pairing(self, config: PairingConfig) -> Pairing:
        """Mirror a sample of ``config.green``'s requests to ``config.blue`` and keep the
        paired predictions (replacing the pairing before, if any).

        Raises:
            HttpError: 400 unknown, shadow or identical variants.
        """
        for role, name in (("green", config.green), ("blue", config.blue)):
            variant = self.variants.get(name)
            if variant is None or variant.removed or variant.state.shadow:
                what = "a shadow" if variant is not None and variant.state.shadow else "unknown"
                raise HttpError(
                    400,
                    f"pairing needs two production variants of endpoint {self.endpoint.name!r}; "
                    f"{role} {name!r} is {what} (variants: {', '.join(self.variants) or 'none'})",
                )
        if config.green == config.blue:
            raise HttpError(
                400, f"pairing needs two different variants, not {config.green!r} twice"
            )
        await self.stop_pairing()
        pairing = Pairing(config, self.variants, mirror_token(self._token))
        self.router.pairing = pairing
        return pairing

    async def stop_pairing(self) -> dict[str, Any] | None:
        """End the pairing, if any; its last counts (no pairs), else ``None``."""
        pairing, self.router.pairing = self.router.pairing, None
        if pairing is None:
            return None
        await pairing.close()
        return pairing.summary()

    async def remove_variant(self, name: str) -> None:
        """Take a variant out of routing, then stop its server (capture flushed).

        Raises:
            HttpError: 404 no such variant.
        """
        variant = self.variants.get(name)
        if variant is None or variant.removed:
            raise HttpError(
                404,
                f"endpoint {self.endpoint.name!r} has no variant {name!r} "
                f"(variants: {', '.join(self.variants) or 'none'})",
            )
        variant.removed = True
        self.router.rebuild()  # no new requests go to it from here on
        pairing = self.router.pairing
        if pairing is not None and name in (pairing.config.green, pairing.config.blue):
            await self.stop_pairing()  # nothing left to pair
        self.persist()
        await self.supervisor.stop(variant)
        if self.variants.get(name) is variant:
            del self.variants[name]

    def set_weights(self, weights: dict[str, float]) -> None:
        """Set the weights of the named variants at once.

        Raises:
            HttpError: 400 an unknown variant or a weight that is not a finite number >= 0.
        """
        unknown = [n for n in weights if n not in self.variants or self.variants[n].removed]
        if unknown:
            raise HttpError(
                400,
                f"unknown variant(s) {', '.join(map(repr, unknown))} of "
                f"endpoint {self.endpoint.name!r}; variants: "
                f"{', '.join(self.variants)}",
            )
        bad = {n: w for n, w in weights.items() if not (math.isfinite(w) and w >= 0)}
        if bad:
            raise HttpError(400, f"weights must be finite numbers >= 0, got {bad}")
        for name, weight in weights.items():
            self.variants[name].state.weight = float(weight)
        self.router.rebuild()
        self.persist()
