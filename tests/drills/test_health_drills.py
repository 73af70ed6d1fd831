"""Health drills: liveness and readiness are separate names on every service, and readiness
during an outage is right for each service's failure mode.

- Every service answers `liveness`, readiness (`""` and its own name) and `dependencies`;
  the router stays ready without its cache (degraded) and turns unready without a provider.
- Redis killed with -9 under load: the ratelimiter, cache and router report what the
  failure mode implies, `llmmesh health` says why, no request outlives its deadline, and
  everything is ready again soon after Redis restarts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import signal
import time
from collections.abc import Iterator

import grpc
import grpc.aio
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from typer.testing import CliRunner

from bench.mesh.resources import UsageMeter
from llmmesh.cache.v1 import cache_service_pb2
from llmmesh.cli import app
from llmmesh.mesh import Mesh
from llmmesh.provider.v1 import provider_service_pb2
from llmmesh.ratelimit.v1 import ratelimit_service_pb2
from llmmesh.router.v1 import router_service_pb2, router_service_pb2_grpc
from llmmesh.runtime.health import DEPENDENCIES, LIVENESS, describe, read_health
from llmmesh.testing.mesh import AUTH_METADATA, local_mesh
from llmmesh.testing.redis_server import RedisServer, running_redis
from tests.drills.conftest import DrillRecord
from tests.drills.support import chat_request, mesh_env, mesh_policy, wait_for

GRPC_NAMES = {
    "router": router_service_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name,
    "ratelimiter": ratelimit_service_pb2.DESCRIPTOR.services_by_name["RateLimitService"].full_name,
    "cache": cache_service_pb2.DESCRIPTOR.services_by_name["CacheService"].full_name,
    "provider": provider_service_pb2.DESCRIPTOR.services_by_name["ProviderService"].full_name,
}
# Readiness probes run every second and the router probes its peers in turn: two rounds.
SETTLE_S = 10.0
REQUEST_DEADLINE_S = 3.0
# A request counts as past its deadline when it ends this much after it.
DEADLINE_SLACK_S = 0.5
CALLERS = 8


def health_of(mesh: Mesh, service: str) -> tuple[str, str]:
    with grpc.insecure_channel(mesh.processes[service].health_address) as channel:
        try:
            return read_health(channel)
        except grpc.RpcError as error:
            return f"UNREACHABLE ({error.code().name})", ""


def status_of(mesh: Mesh, service: str, name: str) -> str:
    with grpc.insecure_channel(mesh.processes[service].health_address) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=name), timeout=2
        )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def cli_health(mesh: Mesh) -> tuple[int, str]:
    """`llmmesh health` against the mesh's health ports: its exit code and what it printed."""
    args = ["health"]
    for service in GRPC_NAMES:
        args += [f"--{service}", str(mesh.health_ports[service])]
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


def until_health(mesh: Mesh, expected: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Waits until each service reports (status, reason) as expected; returns what was seen."""
    seen: dict[str, tuple[str, str]] = {}

    def matches() -> bool:
        seen.update({service: health_of(mesh, service) for service in expected})
        return seen == expected

    wait_for(matches, SETTLE_S, interval_s=0.1)
    return seen


NOT_READY = "not ready (no replica reachable and ready)"
ROUTER_WITHOUT_CACHE = ("SERVING", f"cache {NOT_READY}, serving without it")
ROUTER_WITHOUT_PROVIDER = ("NOT_SERVING", f"provider {NOT_READY}")


def test_liveness_and_readiness_are_separate_names_on_every_service(
    tmp_path: pathlib.Path, drill: DrillRecord
) -> None:
    with local_mesh(tmp_path / "services.log") as mesh:
        names = {
            service: {
                name: status_of(mesh, service, name)
                for name in (LIVENESS, "", grpc_name, DEPENDENCIES)
            }
            for service, grpc_name in GRPC_NAMES.items()
        }
        all_serving = {
            service: dict.fromkeys((LIVENESS, "", grpc_name, DEPENDENCIES), "SERVING")
            for service, grpc_name in GRPC_NAMES.items()
        }
        exit_code, printed = cli_health(mesh)
        # Without its cache the router still serves (every request a miss).
        mesh.processes["cache"].process.send_signal(signal.SIGTERM)
        without_cache = until_health(mesh, {"router": ROUTER_WITHOUT_CACHE})["router"]
        # Without a provider it cannot answer anything that is not cached: not ready.
        mesh.processes["provider"].process.send_signal(signal.SIGTERM)
        without_provider = until_health(mesh, {"router": ROUTER_WITHOUT_PROVIDER})["router"]
        router_alive = status_of(mesh, "router", LIVENESS)
    passed = (
        names == all_serving
        and exit_code == 0
        and without_cache == ROUTER_WITHOUT_CACHE
        and without_provider == ROUTER_WITHOUT_PROVIDER
        and router_alive == "SERVING"
    )
    drill.record(
        expected="liveness, readiness and dependencies SERVING on all four; router without "
        "cache SERVING (degraded), without provider NOT_SERVING, alive throughout",
        observed=f"names {'all SERVING' if names == all_serving else names}; router without "
        f"cache {describe(*without_cache)}, without provider {without_provider[0]}, "
        f"liveness {router_alive}",
        passed=passed,
    )
    assert names == all_serving
    assert exit_code == 0, printed
    assert printed.count("SERVING") == 4
    assert without_cache == ROUTER_WITHOUT_CACHE
    assert without_provider == ROUTER_WITHOUT_PROVIDER
    assert router_alive == "SERVING"


@dataclasses.dataclass
class Load:
    """Callers sending requests in a loop; every request's duration and outcome."""

    router_address: str
    results: list[tuple[float, float, str]] = dataclasses.field(default_factory=list)
    stop: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with grpc.aio.insecure_channel(self.router_address) as channel:
            stub = router_service_pb2_grpc.RouterServiceStub(channel)
            await asyncio.gather(*(self._caller(stub) for _ in range(CALLERS)))

    async def _caller(self, stub: router_service_pb2_grpc.RouterServiceStub) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                async for _ in stub.StreamComplete(
                    chat_request(bypass_cache=False),
                    metadata=AUTH_METADATA,
                    timeout=REQUEST_DEADLINE_S,
                ):
                    pass
                outcome = "OK"
            except grpc.aio.AioRpcError as error:
                outcome = error.code().name
                await asyncio.sleep(0.05)
            self.results.append((started, time.monotonic(), outcome))

    def since(self, moment: float) -> list[tuple[float, float, str]]:
        return [result for result in self.results if result[0] >= moment]


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


EXPECTED_DURING_OUTAGE = {
    "open": {
        "ratelimiter": ("SERVING", "redis unreachable, failing open"),
        "cache": ("SERVING", "redis unreachable, no cached answers"),
        "router": ("SERVING", "ratelimiter: redis unreachable, failing open; "
                   "cache: redis unreachable, no cached answers"),
        "provider": ("SERVING", ""),
    },
    "closed": {
        "ratelimiter": ("NOT_SERVING", "redis unreachable, failing closed"),
        "cache": ("SERVING", "redis unreachable, no cached answers"),
        "router": ("NOT_SERVING", f"ratelimiter {NOT_READY}"),
        "provider": ("SERVING", ""),
    },
}  # fmt: skip
CLI_RATELIMITER_LINE = {
    "open": "SERVING (degraded: redis unreachable, failing open)",
    "closed": "NOT_SERVING (redis unreachable, failing closed)",
}


def _summary(health: dict[str, tuple[str, str]]) -> str:
    return ", ".join(f"{s} {describe(*health[s])}" for s in ("ratelimiter", "cache", "router"))


@pytest.mark.slow_drill
@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_redis_killed_under_load_readiness_follows_each_failure_mode(
    mode: str, own_redis: RedisServer, tmp_path: pathlib.Path, drill: DrillRecord
) -> None:
    env = mesh_env(
        mesh_policy(tmp_path),
        LLMMESH_REDIS_URL=own_redis.url,
        LLMMESH_RATELIMITER_FAILURE_MODE=mode,
    )
    all_ready = dict.fromkeys(GRPC_NAMES, ("SERVING", ""))
    with local_mesh(tmp_path / "services.log", env) as mesh:
        meter = UsageMeter({s: psutil.Process(p.process.pid) for s, p in mesh.processes.items()})
        load = Load(mesh.router_address)
        with meter.measuring():
            traffic = asyncio.ensure_future(load.run())
            before = await asyncio.to_thread(until_health, mesh, all_ready)
            await asyncio.sleep(1.0)
            own_redis.stop()  # kill -9
            killed = time.monotonic()
            during = await asyncio.to_thread(until_health, mesh, EXPECTED_DURING_OUTAGE[mode])
            detected_s = time.monotonic() - killed
            # It holds: a second and a half later every service still says the same.
            await asyncio.sleep(1.5)
            held = {service: health_of(mesh, service) for service in GRPC_NAMES}
            cli_code, cli_output = await asyncio.to_thread(cli_health, mesh)
            own_redis.start()
            restarted = time.monotonic()
            after = await asyncio.to_thread(until_health, mesh, all_ready)
            recover_s = time.monotonic() - restarted
            await asyncio.sleep(1.0)
            load.stop.set()
            await traffic
    during_outage = [r for r in load.results if killed <= r[0] < restarted]
    after_recovery = load.since(restarted + recover_s)
    past_deadline = sum(
        end - start > REQUEST_DEADLINE_S + DEADLINE_SLACK_S for start, end, _ in load.results
    )
    deadline_exceeded = sum(outcome == "DEADLINE_EXCEEDED" for *_, outcome in load.results)
    served_during = sum(outcome == "OK" for *_, outcome in during_outage)
    served_after = sum(outcome == "OK" for *_, outcome in after_recovery)
    ratelimiter_line = next(
        (line for line in cli_output.splitlines() if line.startswith("ratelimiter")), ""
    )
    expected_cli_code = 0 if mode == "open" else 1
    checks = {
        "ready before": before == all_ready,
        "readiness during": during == EXPECTED_DURING_OUTAGE[mode] == held,
        "cli": cli_code == expected_cli_code
        and ratelimiter_line.endswith(CLI_RATELIMITER_LINE[mode]),
        "recovered": after == all_ready and served_after > 0,
        "served during (open only)": served_during > 0 if mode == "open" else True,
        "no request past its deadline": past_deadline == 0 and deadline_exceeded == 0,
    }
    drill.record(
        expected=f"during the outage {_summary(EXPECTED_DURING_OUTAGE[mode])}; "
        "0 requests past deadline; all ready after Redis restarts",
        observed=f"during the outage {_summary(held)}; {past_deadline} past deadline; "
        f"failed checks: {[name for name, ok in checks.items() if not ok] or 'none'}",
        passed=all(checks.values()),
        mode=mode,
        requests=len(load.results),
        served_during_outage=served_during,
        failed_during_outage=len(during_outage) - served_during,
        requests_past_deadline=past_deadline,
        detected_s=round(detected_s, 2),
        time_to_recover_s=round(recover_s, 2),
        peak_rss_mib=round(max(u.peak_rss_mib for u in meter.usage.values()), 1),
    )
    assert checks == dict.fromkeys(checks, True), (during, held, cli_output)
