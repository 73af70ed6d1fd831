"""Liveness and readiness in grpc.health.v1, kept apart, with the reason a service is degraded.

A server answers these names:

- `liveness`: SERVING while the process works. The health servicer answers from the event
  loop, so an answer at all means the loop turns; a probe that times out means it does not.
  It stays SERVING while the service drains: a restart would not help a draining process.
- `""` and the service's own name: readiness, whether it can serve requests *under its
  configured failure modes*. A dependency outage the service is configured to survive (a
  ratelimiter failing open, a cache whose Redis is gone) leaves it SERVING, degraded.
- `dependencies`: SERVING only while nothing is degraded or unready, for tools that read
  statuses alone (grpc_health_probe, alerts).

Each Check answer for a readiness name carries the trailing metadata `llmmesh-health-reason`
when there is something to explain: why the service is degraded (while SERVING) or why it is
not ready. The reason travels in a trailer rather than a new RPC so that every standard probe
keeps working unchanged. Transitions are logged once each and exported as the gauges
`llmmesh.health.ready` and `llmmesh.health.degraded`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import grpc
import grpc.aio
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import metrics

from llmmesh.runtime import semconv

log = structlog.get_logger(__name__)

LIVENESS = "liveness"
DEPENDENCIES = "dependencies"
REASON_METADATA_KEY = "llmmesh-health-reason"
PEER_CHECK_TIMEOUT_S = 1.0
# A reason is a short sentence; a longer one is cut so a trailer stays small.
MAX_REASON_CHARS = 300

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


@dataclasses.dataclass(frozen=True)
class Readiness:
    """What a readiness check found: ready or not, and why when that needs saying."""

    ready: bool
    # Why the service is not ready, or (while ready) why it serves degraded; empty: all well.
    reason: str = ""

    @property
    def degraded(self) -> bool:
        return self.ready and bool(self.reason)


READY = Readiness(True)


def degraded(reason: str) -> Readiness:
    """Serving, with a dependency the service is configured to do without."""
    return Readiness(True, reason)


def unready(reason: str) -> Readiness:
    return Readiness(False, reason)


ReadinessCheck = Callable[[], Awaitable[Readiness]]


def combine(results: Iterable[Readiness]) -> Readiness:
    """Ready when every check is; the reasons of the worst kind present, joined."""
    results = list(results)
    not_ready = [result.reason for result in results if not result.ready]
    if not_ready:
        return unready("; ".join(reason for reason in not_ready if reason) or "not ready")
    return Readiness(True, "; ".join(result.reason for result in results if result.reason))


async def evaluate(checks: Sequence[ReadinessCheck], timeout_s: float) -> Readiness:
    """Runs every check at once, each within `timeout_s`; a check that fails is unready."""
    return combine(await asyncio.gather(*(_bounded(check, timeout_s) for check in checks)))


async def _bounded(check: ReadinessCheck, timeout_s: float) -> Readiness:
    try:
        async with asyncio.timeout(timeout_s):
            return await check()
    except TimeoutError:
        return unready("a readiness check did not answer in time")
    except Exception as error:  # noqa: BLE001 - a check that breaks means not ready
        return unready(f"a readiness check failed ({type(error).__name__})")


class _HealthServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """grpc.health.v1 with the reason trailer, and watches that end once the server drains.

    Written here rather than taken from grpcio-health-checking, whose Watch never ends: every
    peer's channel keeps one open per replica, so a drain would always wait out its whole
    grace period for them. Its Watch also writes while holding the lock `set` needs.
    """

    def __init__(self, readiness_names: tuple[str, ...]) -> None:
        self._readiness_names = readiness_names
        self._statuses: dict[str, health_pb2.HealthCheckResponse.ServingStatus] = {}
        self._changed = asyncio.Condition()
        self._version = 0
        self._closed = False
        self.reason = ""

    async def set(self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        self._statuses[service] = status
        await self._bump()

    async def close_watches(self) -> None:
        """Every watch tells its last status and ends; later ones end at once too."""
        self._closed = True
        await self._bump()

    async def _bump(self) -> None:
        async with self._changed:
            self._version += 1
            self._changed.notify_all()

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        status = self._statuses.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        if self.reason and request.service in self._readiness_names:
            context.set_trailing_metadata(((REASON_METADATA_KEY, self.reason),))
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        seen_version = -1
        last_status = None
        while True:
            async with self._changed:
                while self._version == seen_version:
                    await self._changed.wait()
                seen_version = self._version
            status = self._statuses.get(request.service, SERVICE_UNKNOWN)
            if status != last_status:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last_status = status
            if self._closed:
                return


class HealthReporter:
    """Keeps grpc.health.v1, one log line per transition and two gauges in step with readiness."""

    def __init__(self, service_name: str, meter: metrics.Meter | None = None) -> None:
        self._readiness_names = ("", service_name)
        self.servicer = _HealthServicer(self._readiness_names)
        self.current = unready("starting")
        self._draining = False
        meter = meter or metrics.get_meter("llmmesh.runtime")
        meter.create_observable_gauge(
            "llmmesh.health.ready",
            callbacks=[self._observe_ready],
            unit="1",
            description="1 while the service reports SERVING for readiness",
        )
        meter.create_observable_gauge(
            "llmmesh.health.degraded",
            callbacks=[self._observe_degraded],
            unit="1",
            description="1 while the service serves without a dependency it can do without",
        )

    async def start(self) -> None:
        """Alive at once; ready only once the first readiness probe passes."""
        await self.servicer.set(LIVENESS, SERVING)
        await self._publish(self.current)

    async def report(self, readiness: Readiness) -> None:
        if self._draining or readiness == self.current:
            return
        emit = log.info if readiness.ready and not readiness.reason else log.warning
        emit(
            "readiness_changed",
            ready=readiness.ready,
            degraded=readiness.degraded,
            reason=readiness.reason,
        )
        self.current = readiness
        await self._publish(readiness)

    async def drain(self) -> None:
        """Not ready from now on, so balancers move away; still alive until the process exits.

        Watches end once they have said so, so they do not hold the drain open."""
        self.current = unready("draining")
        self._draining = True
        await self._publish(self.current)
        await self.servicer.close_watches()

    async def _publish(self, readiness: Readiness) -> None:
        self.servicer.reason = _printable(readiness.reason)
        status = SERVING if readiness.ready else NOT_SERVING
        for name in self._readiness_names:
            await self.servicer.set(name, status)
        clean = readiness.ready and not readiness.reason
        await self.servicer.set(DEPENDENCIES, SERVING if clean else NOT_SERVING)

    def _observe_ready(self, _: metrics.CallbackOptions) -> list[metrics.Observation]:
        return [metrics.Observation(int(self.current.ready))]

    def _observe_degraded(self, _: metrics.CallbackOptions) -> list[metrics.Observation]:
        attributes = {semconv.HEALTH_REASON: self.current.reason} if self.current.degraded else {}
        return [metrics.Observation(int(self.current.degraded), attributes)]


async def peer_readiness(channel: grpc.aio.Channel, service: str = "") -> Readiness:
    """A peer's readiness as it reports it, with its reason; unreachable is unready."""
    call = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=PEER_CHECK_TIMEOUT_S
    )
    try:
        response = await call
        trailing = await call.trailing_metadata()
    except grpc.aio.AioRpcError as error:
        # With client-side health checking a channel sends nothing to replicas that are
        # not SERVING, so UNAVAILABLE means none is both reachable and ready.
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            return unready("no replica reachable and ready")
        return unready(f"health check failed: {error.code().name}")
    reason = _reason(trailing or ())
    if response.status != SERVING:
        return unready(reason or health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
    return Readiness(True, reason)


def read_health(
    channel: grpc.Channel, service: str = "", timeout_s: float = 2.0
) -> tuple[str, str]:
    """(status name, reason) of a server's readiness (or of another name), for command-line
    tools and drills."""
    response, call = health_pb2_grpc.HealthStub(channel).Check.with_call(
        health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
    )
    status = str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
    return status, _reason(call.trailing_metadata() or ())


def describe(status: str, reason: str) -> str:
    """`SERVING`, `SERVING (degraded: redis unreachable, failing open)`, `NOT_SERVING (why)`."""
    if not reason:
        return status
    if status == "SERVING":
        return f"SERVING (degraded: {reason})"
    return f"{status} ({reason})"


def _printable(reason: str) -> str:
    """Metadata values must be printable ASCII; a reason is cut to a sentence's length."""
    return "".join(c if " " <= c <= "~" else "?" for c in reason[:MAX_REASON_CHARS])


def _reason(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    for key, value in metadata:
        if key == REASON_METADATA_KEY:
            return value if isinstance(value, str) else value.decode(errors="replace")
    return ""
