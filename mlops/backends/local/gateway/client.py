"""A synchronous HTTP client of a local endpoint's gateway (invocations and admin API).

Invocations go to the endpoint's port; admin calls go to its admin port with the token from
the endpoint's ``admin.token`` file (``Authorization: Bearer ...``), which only the
endpoint's owner can read.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx

from mlops.backends.endpoint import InvokeResult
from mlops.backends.local.gateway.admin_auth import read_token, token_path
from mlops.backends.local.gateway.state import EndpointState, VariantState, endpoint_dir, load_state
from mlops.errors import EndpointError, ModelNotFoundError

if TYPE_CHECKING:
    from types import TracebackType

    from mlops.settings import Settings

__all__ = ["EndpointClient", "InvokeResult"]

INVOKED_HEADER = "X-Amzn-Invoked-Production-Variant"


class EndpointClient:
    """Talks to one gateway on loopback.

    Args:
        base_url: the gateway's URL, e.g. ``http://127.0.0.1:8765``.
        admin_url: the admin API's URL (its own port); ``None``: invocations only.
        token: the admin token; ``None``: invocations only.
        timeout: default timeout in seconds of a request.

    Example::

        with EndpointClient.for_endpoint(settings, "taxi-prod") as client:
            result = client.invoke(b"10.65,1,2.56", "text/csv")  # taxi: minutes, riders, miles
    """

    def __init__(
        self,
        base_url: str,
        *,
        admin_url: str | None = None,
        token: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.admin_url = admin_url.rstrip("/") if admin_url else None
        self._token = token
        self._token_file: str | None = None
        # trust_env=False: a proxy from the environment must not intercept loopback traffic.
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, trust_env=False)
        self._admin_http: httpx.Client | None = None
        if self.admin_url and token:
            self._admin_http = httpx.Client(
                base_url=self.admin_url,
                timeout=timeout,
                trust_env=False,
                headers={"Authorization": f"Bearer {token}"},
            )

    @classmethod
    def for_endpoint(
        cls, settings: Settings, name: str, *, timeout: float = 60.0
    ) -> EndpointClient:
        """A client of endpoint ``name``'s gateway: its ports from the state file, its admin
        token from the endpoint's folder when this user can read it.

        Raises:
            EndpointNotFoundError: no such endpoint.
        """
        return cls.for_state(settings, load_state(settings.endpoints_dir, name), timeout=timeout)

    @classmethod
    def for_state(
        cls, settings: Settings, state: EndpointState, *, timeout: float = 60.0
    ) -> EndpointClient:
        """A client of the gateway that ``state`` describes (see :meth:`for_endpoint`)."""
        folder = endpoint_dir(settings.endpoints_dir, state.name)
        client = cls(
            state.url, admin_url=state.admin_url, token=read_token(folder), timeout=timeout
        )
        client._token_file = str(token_path(folder))
        return client

    def __enter__(self) -> EndpointClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pools."""
        self._http.close()
        if self._admin_http is not None:
            self._admin_http.close()

    # ------------------------------------------------------------------ serving

    def invoke(
        self,
        body: bytes | str,
        content_type: str = "text/csv",
        accept: str | None = None,
        target_variant: str | None = None,
        inference_id: str | None = None,
        timeout: float | None = None,
    ) -> InvokeResult:
        """Send one request to ``POST /invocations``; error statuses are returned, not raised.

        Raises:
            EndpointError: the gateway is not reachable.
        """
        headers = {"Content-Type": content_type}
        if accept:
            headers["Accept"] = accept
        if target_variant:
            headers["X-Amzn-SageMaker-Target-Variant"] = target_variant
        if inference_id:
            headers["X-Amzn-SageMaker-Inference-Id"] = inference_id
        data = body.encode() if isinstance(body, str) else body
        start = time.perf_counter()
        resp = self._request(
            "POST", "/invocations", content=data, headers=headers,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )  # fmt: skip
        return InvokeResult(
            status=resp.status_code,
            body=resp.content,
            content_type=resp.headers.get("content-type", ""),
            variant=resp.headers.get(INVOKED_HEADER),
            latency_ms=(time.perf_counter() - start) * 1000,
        )

    def ping(self) -> bool:
        """Whether the gateway answers ``/ping``."""
        try:
            return self._http.get("/ping", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    # ------------------------------------------------------------------ admin

    def state(self) -> EndpointState:
        """The live state of the endpoint (``GET /admin/state``)."""
        return EndpointState.model_validate(self._admin("GET", "/admin/state", timeout=5.0))

    def add_variant(
        self,
        name: str,
        model_ref: str | None = None,
        *,
        model_dir: str | None = None,
        weight: float = 0.0,
        shadow: bool = False,
        instance_count: int = 1,
        timeout: float = 300.0,
    ) -> VariantState:
        """Start a new variant and wait until it serves (``POST /admin/variants``).

        Args:
            name: variant name, e.g. ``v4``.
            model_ref: ``models:/NAME/VERSION`` or ``NAME@ALIAS`` (downloaded by the gateway).
            model_dir: instead of ``model_ref``, a local MLflow model folder that the
                endpoint's owner chose (:func:`.manager.add_variant`); the
                gateway refuses any other folder.
            weight: relative traffic weight (0: only reachable with a target-variant header).
            shadow: receive a copy of every request; its answers are never returned.
            instance_count: model-server processes to run it (within the endpoint's
                autoscaling bounds, when it scales).
            timeout: how long to wait for the download and the server to get ready.

        Raises:
            ModelNotFoundError: the model reference does not exist.
            EndpointError: the variant could not be added (the message has the server log),
                or the endpoint's owner did not allow its model (a folder not chosen, or a
                model that runs code without ``--allow-code``).
        """
        body = {"name": name, "model_ref": model_ref, "model_dir": model_dir,
                "weight": weight, "shadow": shadow, "instance_count": instance_count}  # fmt: skip
        doc = self._admin("POST", "/admin/variants", json=body, timeout=timeout)
        return VariantState.model_validate(doc)

    def remove_variant(self, name: str, *, timeout: float = 60.0) -> None:
        """Stop a variant's server (capture flushed) and remove it."""
        self._admin("DELETE", f"/admin/variants/{name}", timeout=timeout)

    def set_weights(self, weights: dict[str, float]) -> dict[str, float]:
        """Set the weights of the named variants at once; return every variant's weight."""
        doc = self._admin("PUT", "/admin/weights", json={"weights": weights}, timeout=10.0)
        return {k: float(v) for k, v in doc["weights"].items()}

    def metrics(self, since: float = 0.0) -> dict[str, Any]:
        """Per-variant request counts, latency percentiles and predictions since a unix time."""
        return dict(self._admin("GET", "/admin/metrics", params={"since": since}, timeout=30.0))

    def start_pairing(
        self, green: str, blue: str, *, sample_rate: float = 1.0, max_per_s: float = 50.0
    ) -> dict[str, Any]:
        """Mirror a sample of ``green``'s requests to ``blue`` and keep the paired
        predictions (``PUT /admin/pairing``); return the pairing's ``id`` and counts.

        Args:
            green: the variant whose answered requests are copied.
            blue: the variant that answers the copies (never returned, counted or captured).
            sample_rate: share of green's requests copied.
            max_per_s: at most this many copies a second.
        """
        body = {"green": green, "blue": blue, "sample_rate": sample_rate, "max_per_s": max_per_s}
        return dict(self._admin("PUT", "/admin/pairing", json=body, timeout=10.0))

    def pairing(self, after: int = 0) -> dict[str, Any]:
        """The pairing's counts and the (green, blue) pairs numbered above ``after``
        (``next``: what to pass next time); ``{"active": False}`` when there is none."""
        return dict(self._admin("GET", "/admin/pairing", params={"after": after}, timeout=30.0))

    def stop_pairing(self) -> dict[str, Any]:
        """End the pairing (``DELETE /admin/pairing``); its last counts."""
        return dict(self._admin("DELETE", "/admin/pairing", timeout=10.0))

    def shutdown(self, *, delete: bool = False) -> None:
        """Ask the gateway to stop its variants and exit (the state file stays)."""
        params = {"delete": "true"} if delete else None
        self._admin("POST", "/admin/shutdown", params=params, json={}, timeout=10.0)

    # ------------------------------------------------------------------ plumbing

    def _request(
        self, method: str, path: str, *, http: httpx.Client | None = None, **kwargs: Any
    ) -> httpx.Response:
        http = http or self._http
        try:
            return http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise EndpointError(
                f"{method} {http.base_url}{path} timed out; the gateway is busy or stuck, "
                "see its gateway.log in the endpoint's folder"
            ) from None
        except httpx.TransportError as exc:
            raise EndpointError(
                f"gateway at {http.base_url} is not reachable ({exc}); is the endpoint "
                "running? start it with `mlops endpoint start NAME`"
            ) from None

    def _admin(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._admin_http is None:
            where = f" in {self._token_file}" if self._token_file else ""
            raise EndpointError(
                f"{method} {path} needs the admin port and token of the endpoint at "
                f"{self.base_url}; only its owner can read the token{where}. Use "
                "EndpointClient.for_endpoint(settings, NAME) as the endpoint's owner, and "
                "start an endpoint made by an older version once with `mlops endpoint start`"
            )
        resp = self._request(method, path, http=self._admin_http, **kwargs)
        try:
            doc = resp.json()
        except ValueError:
            doc = {"error": resp.text}
        if resp.is_success:
            return doc
        message = doc.get("error", resp.text) if isinstance(doc, dict) else resp.text
        if resp.status_code == 404 and path == "/admin/variants":
            raise ModelNotFoundError(message)
        raise EndpointError(f"{method} {path} failed with {resp.status_code}: {message}")
