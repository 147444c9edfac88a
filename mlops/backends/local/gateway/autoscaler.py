"""Target tracking of a local endpoint's instance counts: the gateway's scaling loop.

The local counterpart of Application Auto Scaling's target-tracking policy on
``SageMakerVariantInvocationsPerInstance``. Every ``evaluation_period_s`` the gateway counts
each variant's invocations over the last period (its in-memory metrics: every answer, errors
included, as CloudWatch's ``Invocations``) and sets the variant's instance count to

    desired = ceil(current * actual / target) = ceil(invocations per minute / target)

within ``[min_instances, max_instances]``. A scale-out waits ``scale_out_cooldown_s`` after
the variant's last scale-out; a scale-in waits ``scale_in_cooldown_s`` after its last
scaling activity of either kind (a gateway's start counts as one), so a burst does not make
the count flap. New instances take requests only once they answer ``/ping``; instances
scaled in are drained first (no new request, those in flight answered) and then stopped,
their capture flushed. Each activity is logged and kept in the endpoint's state
(``autoscaling.activities``), which ``mlops endpoint describe`` shows.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlops.backends.local.gateway.state import ScalingActivity
from mlops.errors import MlopsError

if TYPE_CHECKING:
    from mlops.backends.local.gateway.state import AutoscalingState, EndpointState
    from mlops.backends.local.gateway.supervision import Supervisor
    from mlops.backends.local.gateway.variants import Variant

__all__ = ["Autoscaler", "desired_count"]

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 60.0  # the gateway's timeout for a model server's answer


def desired_count(invocations: int, window_s: float, policy: AutoscalingState) -> int:
    """The instance count that brings a variant to its target invocations per instance.

    Args:
        invocations: the variant's invocations over the window.
        window_s: the window's length in seconds.
        policy: target (per instance per minute) and bounds.

    Returns:
        ``ceil(invocations per minute / target)`` within ``[min, max]``.
    """
    per_minute = invocations * 60.0 / window_s
    # round first: 120 invocations at a target of 60 are 2 instances, not 3 by a float's edge
    wanted = math.ceil(round(per_minute / policy.target_invocations_per_instance, 9))
    return policy.clamp(wanted)


class Autoscaler:
    """Scales the variants of one gateway between the policy's bounds.

    Args:
        endpoint: the endpoint's state; its ``autoscaling`` is the policy and keeps the
            activities.
        variants: the gateway's variants by name.
        supervisor: starts and drains instances.
        persist: saves the state file after each change.
    """

    def __init__(
        self,
        endpoint: EndpointState,
        variants: dict[str, Variant],
        supervisor: Supervisor,
        persist: Callable[[], None],
    ) -> None:
        assert endpoint.autoscaling is not None
        self.endpoint = endpoint
        self.policy: AutoscalingState = endpoint.autoscaling
        self.variants = variants
        self.supervisor = supervisor
        self.persist = persist
        started = time.monotonic()
        self._last_out: dict[str, float] = {}
        self._last_any: dict[str, float] = {}
        self._started = started
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self) -> None:
        """Evaluate every ``evaluation_period_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.policy.evaluation_period_s)
            try:
                self.evaluate()
            except Exception:  # the loop must go on; the cause is in the gateway's log
                logger.exception("endpoint %s: autoscaling evaluation failed", self.endpoint.name)

    def cancel(self) -> None:
        """Stop scaling activities in progress (at shutdown)."""
        for task in list(self._tasks):
            task.cancel()

    def evaluate(self) -> None:
        """Start a scaling activity for each variant whose count is off target."""
        if self.endpoint.status != "InService" or self.supervisor.stopping:
            return
        now = time.monotonic()
        window = self.policy.evaluation_period_s
        for name, variant in list(self.variants.items()):
            if variant.removed or variant.busy or variant.scaling:
                continue
            current = variant.serving
            if current == 0:
                continue  # nothing serves: the supervisor restarts it first
            invocations = variant.metrics.count_since(time.time() - window)
            desired = desired_count(invocations, window, self.policy)
            per_instance = invocations * 60.0 / window / current
            if desired > current and self._may(name, now, scale_out=True):
                variant.scaling = True  # now: one activity at a time per variant
                self._spawn(self._scale_out(variant, current, desired, per_instance))
            elif desired < current and self._may(name, now, scale_out=False):
                variant.scaling = True
                self._spawn(self._scale_in(variant, current, desired, per_instance))

    def _may(self, name: str, now: float, *, scale_out: bool) -> bool:
        if scale_out:
            since = now - self._last_out.get(name, self._started)
            return since >= self.policy.scale_out_cooldown_s
        since = now - self._last_any.get(name, self._started)
        return since >= self.policy.scale_in_cooldown_s

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _scale_out(
        self, variant: Variant, current: int, desired: int, per_instance: float
    ) -> None:
        name = variant.state.name
        variant.state.instance_count = desired
        cause = self._cause(per_instance, "above")
        logger.info("endpoint %s variant %s: scaling out %d -> %d instances (%s)",
                    self.endpoint.name, name, current, desired, cause)  # fmt: skip
        self.persist()
        try:
            results = await asyncio.gather(
                *(self.supervisor.add_instance(variant) for _ in range(desired - current)),
                return_exceptions=True,
            )
            failed = [r for r in results if isinstance(r, BaseException)]
            for problem in failed:
                if not isinstance(problem, MlopsError):
                    raise problem
            now_serving = variant.serving
            if failed:
                variant.state.instance_count = max(now_serving, 1)
                cause = f"{cause}; {len(failed)} instance(s) failed to start: {failed[0]}"
            self._finish(variant, current, now_serving, per_instance, cause, failed=bool(failed))
        finally:
            variant.scaling = False
            now = time.monotonic()
            self._last_out[name] = self._last_any[name] = now

    async def _scale_in(
        self, variant: Variant, current: int, desired: int, per_instance: float
    ) -> None:
        name = variant.state.name
        routable = [i for i in variant.instances if i.routable]
        leaving = routable[desired:]
        variant.state.instance_count = desired
        for instance in leaving:
            instance.draining = True  # no new request from here on
        cause = self._cause(per_instance, "below")
        logger.info("endpoint %s variant %s: scaling in %d -> %d instances (%s)",
                    self.endpoint.name, name, current, desired, cause)  # fmt: skip
        self.persist()
        try:
            await asyncio.gather(
                *(self.supervisor.drain(variant, i, DRAIN_TIMEOUT_S) for i in leaving)
            )
            self._finish(variant, current, variant.serving, per_instance, cause, failed=False)
        finally:
            variant.scaling = False
            self._last_any[name] = time.monotonic()

    def _cause(self, per_instance: float, side: str) -> str:
        return (
            f"{per_instance:.1f} invocations per instance per minute over the last "
            f"{self.policy.evaluation_period_s:g} s, {side} the target of "
            f"{self.policy.target_invocations_per_instance:g}"
        )

    def _finish(
        self, variant: Variant, before: int, after: int, per_instance: float, cause: str,
        *, failed: bool,
    ) -> None:  # fmt: skip
        self.policy.record(ScalingActivity(
            variant=variant.state.name, from_count=before, to_count=after,
            invocations_per_instance=round(per_instance, 3),
            status="Failed" if failed else "Successful", cause=cause,
        ))  # fmt: skip
        log = logger.warning if failed else logger.info
        log("endpoint %s variant %s: now %d instances%s", self.endpoint.name,
            variant.state.name, after, f" ({cause})" if failed else "")  # fmt: skip
        if not self.supervisor.stopping and not variant.removed:
            self.persist()
