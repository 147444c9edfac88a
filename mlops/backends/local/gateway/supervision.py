"""The variants' model-server processes: start, adopt, probe, restart, scale, stop.

Each variant runs ``instance_count`` instances, each a ``python -m mlops.serving`` process
in a process group of its own (in the gateway's session), so it outlives a killed gateway; a
gateway started again adopts an instance whose recorded pid is still that server and answers
``/ping`` on its port, and starts the others. An instance whose process dies is restarted
with exponential back-off (the workers of a server killed alone are stopped first: they
would keep its port) while the variant's other instances serve. The autoscaler adds
instances (:meth:`Supervisor.add_instance`) and drains them (:meth:`Supervisor.drain`).
Every instance writes its own capture files (a writer per process, a uuid in each file's
name), so several instances of a variant neither lose nor double a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.backends.local.gateway.admin_auth import read_token
from mlops.backends.local.gateway.pairing import MIRROR_TOKEN_ENV, mirror_token
from mlops.backends.local.gateway.processes import (
    STOP_GRACE_S,
    find_free_port,
    is_process_of,
    kill_group,
    kill_orphans,
    log_tail,
    port_is_free,
)
from mlops.backends.local.gateway.state import InstanceState
from mlops.backends.local.gateway.variants import Instance, Variant
from mlops.errors import EndpointError, MlopsError

if TYPE_CHECKING:
    import httpx

    from mlops.backends.local.gateway.state import EndpointState, VariantState
    from mlops.settings import Settings

__all__ = ["Supervisor"]

logger = logging.getLogger(__name__)

VARIANT_START_TIMEOUT_S = 120.0
SUPERVISE_INTERVAL_S = 1.0
MAX_RESTART_BACKOFF_S = 30.0


class Supervisor:
    """Runs the model servers of one endpoint's variants.

    Args:
        settings: settings of the gateway (serving settings go to the model servers).
        endpoint: the endpoint's state (name, capture; its status is set at bring-up).
        variants: the gateway's variants by name, watched and restarted here.
        folder: the endpoint's folder (``variants/<name>.log`` below it).
        on_change: called after a status, pid or port changed (saves the state file).
        forget_port: called with the port of a server that stopped (its kept-alive
            connections are dropped).
    """

    def __init__(
        self,
        settings: Settings,
        endpoint: EndpointState,
        variants: dict[str, Variant],
        folder: Path,
        on_change: Callable[[], None],
        forget_port: Callable[[int | None], None] = lambda port: None,
    ) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.variants = variants
        self.folder = folder
        self.on_change = on_change
        self.forget_port = forget_port
        self.stopping = False
        self._pending: dict[str, Variant] = {}  # being added, not yet in ``variants``
        self._tasks: set[asyncio.Task[Any]] = set()
        self._client: httpx.AsyncClient | None = None

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Adopt or start every variant in the background, then watch them."""
        import httpx

        self._client = httpx.AsyncClient(timeout=2.0, trust_env=False)
        self._spawn(self._bring_up())

    def halt(self) -> None:
        """Stop watching (at shutdown): no restart from here on."""
        self.stopping = True
        for task in list(self._tasks):
            task.cancel()

    async def stop_all(self) -> None:
        """Stop every variant's server, those being added included (capture flushed)."""
        self.halt()
        everything = [*self.variants.values(), *self._pending.values()]
        await asyncio.gather(*(self.stop(v) for v in everything), return_exceptions=True)

    async def close(self) -> None:
        """Close the connection pool of the probes."""
        if self._client is not None:
            await self._client.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _bring_up(self) -> None:
        """Adopt or start every variant, then mark the endpoint InService (or Failed)."""
        results = await asyncio.gather(
            *(self._start_or_adopt(v) for v in self.variants.values()), return_exceptions=True
        )
        errors = [str(r) for r in results if isinstance(r, BaseException)]
        if errors:
            self.endpoint.status = "Failed"
            self.endpoint.last_error = "; ".join(errors)
        else:
            self.endpoint.status = "InService"
        self.on_change()
        logger.info("endpoint %s is %s", self.endpoint.name, self.endpoint.status)
        self._spawn(self._supervise())

    async def _start_or_adopt(self, variant: Variant) -> None:
        """Bring a variant to ``instance_count`` instances: adopt those still serving from
        an earlier gateway, start the others, stop the ones beyond the count.

        Raises:
            EndpointError: no instance of it got ready (the first problem).
        """
        count = variant.state.instance_count
        extra = variant.instances[count:]
        keep = variant.instances[:count]
        while len(keep) < count:
            keep.append(Instance(InstanceState(id=_next_id(keep))))
        variant.instances = keep
        variant.busy = True
        try:
            await asyncio.gather(*(self._terminate(i) for i in extra), return_exceptions=True)
            results = await asyncio.gather(
                *(self._adopt_or_start(variant, i) for i in keep), return_exceptions=True
            )
        finally:
            variant.busy = False
        failed = [r for r in results if isinstance(r, BaseException)]
        if len(failed) == len(results):
            raise failed[0]
        for problem in failed:  # the others serve; the supervisor retries these
            logger.warning("variant %s: an instance failed to start: %s", variant.state.name,
                           problem)  # fmt: skip

    async def _adopt_or_start(self, variant: Variant, instance: Instance) -> None:
        i = instance.state
        instance.busy = True
        try:
            if i.port and is_process_of(i.pid, "mlops.serving", str(i.port)):
                if (await self._probe(instance))[0]:
                    i.status, i.failure_reason = "InService", None
                    logger.info(
                        "adopted variant %s instance %s (pid %s, port %s)",
                        variant.state.name, i.id, i.pid, i.port,
                    )  # fmt: skip
                    return
                logger.warning(
                    "variant %s instance %s (pid %s) does not answer; replacing it",
                    variant.state.name, i.id, i.pid,
                )  # fmt: skip
                await self._terminate(instance)
            await self._start_instance(variant, instance)
        finally:
            instance.busy = False

    # ------------------------------------------------------------------ one variant

    async def start_new(self, variant: Variant) -> None:
        """Start a variant that is not in ``variants`` yet (``instance_count`` instances at
        once); a shutdown meanwhile stops it.

        Raises:
            EndpointError: a server did not get ready (the message has its log tail); the
                instances that did are stopped again.
        """
        variant.busy = True
        self._pending[variant.state.name] = variant
        count = variant.state.instance_count
        variant.instances = [Instance(InstanceState(id=n)) for n in range(count)]
        try:
            results = await asyncio.gather(
                *(self._start_instance(variant, i) for i in variant.instances),
                return_exceptions=True,
            )
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                await asyncio.gather(
                    *(self._terminate(i) for i in variant.instances), return_exceptions=True
                )
                raise failed[0]
        finally:
            variant.busy = False
            self._pending.pop(variant.state.name, None)

    async def stop(self, variant: Variant) -> None:
        """Stop a variant's servers for good (SIGTERM, then SIGKILL after a grace period)."""
        variant.busy = True
        await asyncio.gather(*(self._terminate(i) for i in variant.instances))

    async def add_instance(self, variant: Variant) -> Instance:
        """Start one more instance of a running variant; it takes requests once it answers
        ``/ping`` (until then it is ``Creating``, which routing skips).

        Raises:
            EndpointError: it did not get ready (it is dropped again).
        """
        instance = Instance(InstanceState(id=variant.next_instance_id()), busy=True)
        variant.instances.append(instance)
        try:
            await self._start_instance(variant, instance)
        except BaseException:
            if instance in variant.instances:
                variant.instances.remove(instance)
            raise
        finally:
            instance.busy = False
        return instance

    async def drain(self, variant: Variant, instance: Instance, timeout_s: float) -> None:
        """Scale in: route no new request to ``instance``, let those in flight finish (for
        up to ``timeout_s``), then stop its server (capture flushed) and drop it."""
        instance.draining = True
        instance.busy = True
        deadline = time.monotonic() + timeout_s
        while instance.outstanding > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self._terminate(instance)
        if instance in variant.instances:
            variant.instances.remove(instance)

    def _log(self, name: str, instance_id: int = 0) -> Path:
        suffix = "" if instance_id == 0 else f".{instance_id}"
        return self.folder / "variants" / f"{name}{suffix}.log"

    def _command(self, v: VariantState, port: int | None) -> list[str]:
        cmd = [
            sys.executable, "-m", "mlops.serving",
            "--model-dir", v.model_dir,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--endpoint-name", self.endpoint.name,
            "--variant-name", v.name,
        ]  # fmt: skip
        capture = self.endpoint.capture
        if capture.enabled and capture.destination:
            cmd += [
                "--capture",
                capture.destination,
                "--sampling",
                str(capture.sampling_percentage),
            ]
        return cmd

    def _environment(self) -> dict[str, str]:
        """The model server's environment: this endpoint's capture switch wins over the
        settings (the server would capture to ``serving.capture.destination`` otherwise),
        and the mirror token that keeps a rollout's mirrored copies out of capture."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("MLOPS_SERVING__") and k != MIRROR_TOKEN_ENV
        }
        serving = self.settings.serving.model_dump(mode="json")
        serving["capture"]["enabled"] = self.endpoint.capture.enabled
        env["MLOPS_SERVING"] = json.dumps(serving)
        token = read_token(self.folder)
        if token is not None:
            env[MIRROR_TOKEN_ENV] = mirror_token(token)
        return env

    async def _start_instance(self, variant: Variant, instance: Instance) -> None:
        """Start one model server of a variant and wait until it answers ``/ping``.

        Raises:
            EndpointError: the server exited or did not get ready; with its log tail.
        """
        v, i = variant.state, instance.state
        if not Path(v.model_dir).is_dir():
            i.status = "Failed"
            i.failure_reason = f"model folder {v.model_dir} does not exist"
            raise EndpointError(
                f"variant {v.name!r}: model folder {v.model_dir} does not exist; remove the "
                "variant and add it again from its model_ref so that it is downloaded again"
            )
        for attempt in range(3):
            if not i.port or not port_is_free(i.port):
                i.port = find_free_port()
            log_path = self._log(v.name, i.id)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            i.status, i.failure_reason = "Creating", None
            with log_path.open("ab") as log:
                log.write(f"\n--- starting variant {v.name} on port {i.port}\n".encode())
                log.flush()
                instance.proc = subprocess.Popen(
                    self._command(v, i.port),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self._environment(),
                    # Its own process group (stopped as one, outlives a killed gateway and
                    # is adopted on restart) in the gateway's session: on a busy machine
                    # Linux shares CPU fairly between sessions (autogroups), and an endpoint
                    # is then one of them, as a model server started alone is.
                    process_group=0,
                )
            i.pid = instance.proc.pid
            problem = await self._wait_ready(instance, VARIANT_START_TIMEOUT_S)
            if problem is None and (variant.removed or instance.draining or self.stopping):
                await self._terminate(instance)
                raise EndpointError(f"variant {v.name!r} was removed while it started")
            if problem is None:
                i.status, i.failure_reason = "InService", None
                instance.failures = 0
                logger.info(
                    "variant %s instance %s serving on port %s (pid %s)",
                    v.name, i.id, i.port, i.pid,
                )  # fmt: skip
                return
            await asyncio.sleep(0.2)  # let the server's last words reach its log
            tail = log_tail(log_path)
            exited = instance.proc.poll() is not None
            if exited and "address already in use" in tail.lower() and attempt < 2:
                i.port = None  # lost a race for the port: take another one
                continue
            await self._terminate(instance)
            i.status = "Failed"
            i.failure_reason = f"model server {problem}; log {log_path}:\n{tail}"
            raise EndpointError(
                f"variant {v.name!r} of endpoint {self.endpoint.name!r} failed to start: its "
                f"model server {problem}. Last lines of {log_path}:\n{tail}"
            )

    async def _wait_ready(self, instance: Instance, timeout_s: float) -> str | None:
        """Wait until the instance answers ``/ping`` with 200.

        Returns:
            ``None`` when it is ready, else why not (exited, failed to load, timed out).
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not instance.alive():
                return "exited"
            ready, problem = await self._probe(instance)
            if ready:
                return None
            if problem is not None:
                return problem
            await asyncio.sleep(0.2)
        return f"did not answer /ping in {timeout_s:.0f} s"

    async def _probe(self, instance: Instance) -> tuple[bool, str | None]:
        """Ping once: (ready, a problem that waiting will not fix, e.g. a model that failed
        to load and leaves the server at 503 for good)."""
        import httpx

        assert self._client is not None, "Supervisor.start() was not awaited"
        try:
            resp = await self._client.get(f"{instance.url}/ping", timeout=2.0)
        except httpx.HTTPError:
            return False, None
        if resp.status_code == 200:
            return True, None
        text = resp.text
        if "failed to load" in text:
            with contextlib.suppress(ValueError):
                text = str(resp.json().get("error", text))
            return False, f"answers /ping with {resp.status_code}: {text[:1000]}"
        return False, None

    async def _terminate(self, instance: Instance) -> None:
        pid = instance.state.pid
        if pid is None:
            return
        if instance.proc is None and not is_process_of(pid, "mlops.serving"):
            return  # recorded pid is gone or was recycled by another program
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline:
            if not instance.alive():
                break
            await asyncio.sleep(0.05)
        else:
            logger.warning("model server pid %s did not stop in %s s; killing it", pid,
                           STOP_GRACE_S)  # fmt: skip
            kill_group(pid)
        if instance.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                instance.proc.wait(timeout=1)
        self.forget_port(instance.state.port)

    # ------------------------------------------------------------------ watching

    async def _supervise(self) -> None:
        """Restart instances whose process died (exponential back-off); the variant's other
        instances take its requests meanwhile."""
        while not self.stopping:
            await asyncio.sleep(SUPERVISE_INTERVAL_S)
            now = time.monotonic()
            for variant in list(self.variants.values()):
                if variant.busy or variant.removed or self.stopping:
                    continue
                for instance in list(variant.instances):
                    if instance.busy or instance.draining or instance.alive():
                        continue
                    self._died(variant, instance)
                    if now >= instance.next_restart:
                        self._spawn(self._restart(variant, instance))

    def _died(self, variant: Variant, instance: Instance) -> None:
        i = instance.state
        kill_orphans(i.pid)  # its workers, if it was killed alone
        if i.status != "InService":
            return
        code = instance.proc.poll() if instance.proc is not None else None
        tail = log_tail(self._log(variant.state.name, i.id), 10)
        i.status = "Failed"
        i.failure_reason = f"process exited (code {code}):\n{tail}"
        logger.warning(
            "variant %s instance %s died (code %s); restarting it", variant.state.name, i.id, code
        )
        self.on_change()

    async def _restart(self, variant: Variant, instance: Instance) -> None:
        instance.busy = True
        try:
            await self._start_instance(variant, instance)
            if self.endpoint.status == "Failed" and all(
                v.sync().status == "InService" for v in self.variants.values() if not v.removed
            ):
                self.endpoint.status, self.endpoint.last_error = "InService", None
        except MlopsError as exc:
            instance.failures += 1
            backoff = min(MAX_RESTART_BACKOFF_S, 2.0**instance.failures)
            instance.next_restart = time.monotonic() + backoff
            logger.error(
                "restarting variant %s instance %s failed (next try in %.0f s): %s",
                variant.state.name,
                instance.state.id,
                backoff,
                exc,
            )
        finally:
            instance.busy = False
            if not self.stopping and not variant.removed:
                self.on_change()


def _next_id(instances: list[Instance]) -> int:
    return max((i.state.id for i in instances), default=-1) + 1
