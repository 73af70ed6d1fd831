"""Ratelimiter drills against real processes and a real redis-server.

- A slow Redis is not a dead one: three ratelimiter processes on one Redis whose replies are
  late by 5, 50 or 250 ms admit exactly the limit in both failure modes, although some
  callers give up while Redis works (their decisions are undone), and no lease is left.
- A ratelimiter stopped with SIGTERM under 20 paced streams loses no settlement and leaks no
  concurrency lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import IO

import grpc
import grpc.aio
import psutil
import pytest
import redis
import yaml

from bench.mesh.resources import UsageMeter
from llmmesh.mesh import Mesh, MeshProcess
from llmmesh.ratelimit.v1 import ratelimit_pb2, ratelimit_service_pb2, ratelimit_service_pb2_grpc
from llmmesh.router.v1 import router_service_pb2_grpc
from llmmesh.runtime.health import read_health
from llmmesh.testing.background import serving_in_background
from llmmesh.testing.delaying_proxy import DelayingProxy
from llmmesh.testing.mesh import AUTH_METADATA, free_mesh_ports
from llmmesh.testing.ports import free_port
from llmmesh.testing.redis_server import RedisServer
from llmmesh_ratelimiter.testing import held_leases, reservation_states
from tests.drills.conftest import DrillRecord
from tests.drills.support import chat_request, mesh_env, mesh_policy, wait_for

LIMIT = 100
REPLICAS = 3
CALLERS_PER_REPLICA = 200
MONTH_S = 30 * 86400
# Every fourth caller of the first wave gives up at half the reply delay, while its script
# has already run in Redis: the case where giving up must not cost the limit anything.
IMPATIENT_EVERY = 4
PATIENT_DEADLINE_S = 60.0
SETTLE_WITHIN_S = 20.0
START_WITHIN_S = 30.0
STOP_WITHIN_S = 30.0


# --- a slow Redis -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_behind_proxy() -> Iterator[tuple[RedisServer, DelayingProxy]]:
    server = RedisServer()
    server.start()
    try:
        with serving_in_background(DelayingProxy(server.port)) as proxy:
            yield server, proxy
    finally:
        server.close()


@dataclasses.dataclass
class Ratelimiters:
    mode: str
    ports: list[int]
    processes: list[psutil.Process]
    log_path: pathlib.Path

    def errors_logged(self) -> int:
        """Error lines the replicas logged so far (a call that failed twice, say)."""
        return sum('"level": "error"' in line for line in self.log_path.read_text().splitlines())


@pytest.fixture(scope="module", params=["open", "closed"])
def ratelimiters(
    request: pytest.FixtureRequest,
    redis_behind_proxy: tuple[RedisServer, DelayingProxy],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Ratelimiters]:
    """Three ratelimiter processes on separate ports, all on Redis through the proxy."""
    _, proxy = redis_behind_proxy
    limits = [
        {"name": "rpm", "kind": "requests", "scope": "tenant", "limit": LIMIT,
         "window_s": MONTH_S},
        # Never binding: it makes every admission hold a lease, so leaks can be counted.
        {"name": "in-flight", "kind": "concurrency", "scope": "tenant", "limit": 10_000},
    ]  # fmt: skip
    policy = tmp_path_factory.mktemp(f"slow-redis-{request.param}") / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {"tenants": [{"name": "acme", "tier": "std"}], "limits": {"tiers": {"std": limits}}}
        )
    )
    env = {
        "LLMMESH_REDIS_URL": proxy.url,
        "LLMMESH_POLICY_FILE": str(policy),
        "LLMMESH_RATELIMITER_FAILURE_MODE": request.param,
        "LLMMESH_RATELIMITER_DRAIN_DELAY_S": "0",
        # The generous bound past which Redis counts as dead, more generous here: the proxy
        # shares this loaded test process and must not pass for a dead Redis. What is drilled
        # is that slow answers are awaited, not where the bound lies.
        "LLMMESH_RATELIMITER_DECISION_TIMEOUT_S": "5",
    }
    log_path = policy.parent / "ratelimiters.log"
    with log_path.open("ab") as log:
        members = [
            _spawn_ratelimiter({**os.environ, **env}, free_port(), free_port(), log)
            for _ in range(REPLICAS)
        ]
        try:
            for member in members:
                _wait_ready(member)
            yield Ratelimiters(
                request.param,
                [member.port for member in members],
                [psutil.Process(member.process.pid) for member in members],
                log_path,
            )
        finally:
            for member in members:
                member.process.terminate()
            for member in members:
                member.process.wait(STOP_WITHIN_S)


def _spawn_ratelimiter(
    env: dict[str, str], port: int, health_port: int, log: IO[bytes]
) -> MeshProcess:
    process = subprocess.Popen(
        [sys.executable, "-m", "llmmesh_ratelimiter"],
        env={
            **env,
            "LLMMESH_RATELIMITER_PORT": str(port),
            "LLMMESH_RATELIMITER_HEALTH_PORT": str(health_port),
            # Called directly by the drill, which is no mesh peer.
            "LLMMESH_INSECURE_PEERS": "true",
        },
        stdout=log,
        stderr=log,
    )
    return MeshProcess("ratelimiter", port, health_port, process)


def _wait_ready(member: MeshProcess) -> None:
    def ready() -> bool:
        assert member.process.poll() is None, "a ratelimiter process exited"
        with grpc.insecure_channel(member.health_address) as channel:
            try:
                return read_health(channel, timeout_s=1.0) == ("SERVING", "")
            except grpc.RpcError:
                return False

    assert wait_for(ready, START_WITHIN_S, interval_s=0.1), "a ratelimiter did not get ready"


async def _wave(
    stubs: list[ratelimit_service_pb2_grpc.RateLimitServiceStub],
    name: str,
    impatient_deadline_s: float | None,
) -> tuple[list[ratelimit_service_pb2.ReserveResponse], int]:
    """Every caller at once, round-robin over the replicas; (admissions, callers that gave up)."""

    async def call(index: int) -> ratelimit_service_pb2.ReserveResponse | None:
        impatient = impatient_deadline_s is not None and index % IMPATIENT_EVERY == 0
        try:
            return await stubs[index % len(stubs)].Reserve(
                ratelimit_service_pb2.ReserveRequest(
                    tenant="acme", model="m", estimated_tokens=1, request_id=f"{name}-{index}"
                ),
                timeout=impatient_deadline_s if impatient else PATIENT_DEADLINE_S,
            )
        except grpc.aio.AioRpcError as error:
            if not impatient or error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
            return None

    answers = await asyncio.gather(*(call(i) for i in range(CALLERS_PER_REPLICA * len(stubs))))
    admitted = [a for a in answers if a and a.decision == ratelimit_pb2.DECISION_ALLOW]
    return admitted, sum(answer is None for answer in answers)


async def _settle(
    stubs: list[ratelimit_service_pb2_grpc.RateLimitServiceStub],
    admitted: list[ratelimit_service_pb2.ReserveResponse],
) -> None:
    settled = await asyncio.gather(
        *(
            stubs[(i + 1) % len(stubs)].Settle(
                ratelimit_service_pb2.SettleRequest(
                    reservation_id=answer.reservation_id, actual_tokens=1
                ),
                timeout=PATIENT_DEADLINE_S,
            )
            for i, answer in enumerate(admitted)
            if answer.reservation_id
        )
    )
    assert all(outcome.found for outcome in settled)


@pytest.mark.parametrize(
    "delay_ms",
    [
        5,
        pytest.param(50, marks=pytest.mark.slow_drill),
        pytest.param(250, marks=pytest.mark.slow_drill),
    ],
)
async def test_slow_redis_three_replicas_admit_exactly_the_limit(
    delay_ms: int,
    ratelimiters: Ratelimiters,
    redis_behind_proxy: tuple[RedisServer, DelayingProxy],
    drill: DrillRecord,
) -> None:
    mode, ports, processes = ratelimiters.mode, ratelimiters.ports, ratelimiters.processes
    errors_before = ratelimiters.errors_logged()
    server, proxy = redis_behind_proxy
    direct = redis.Redis(host="127.0.0.1", port=server.port)
    direct.flushall()
    direct.close()
    proxy.delay_s = delay_ms / 1000
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for port in ports]
    stubs = [ratelimit_service_pb2_grpc.RateLimitServiceStub(c) for c in channels]
    meter = UsageMeter({f"ratelimiter-{i}": p for i, p in enumerate(processes)})
    started = time.monotonic()
    try:
        with meter.measuring():
            first, gave_up = await _wave(stubs, "first", impatient_deadline_s=delay_ms / 2000)
            await _settle(stubs, first)
            # Given-up decisions are undone in the background; then their capacity is back.
            await asyncio.to_thread(wait_for, lambda: not held_leases(server.url), SETTLE_WITHIN_S)
            second, _ = await _wave(stubs, "second", impatient_deadline_s=None)
            await _settle(stubs, second)
            await asyncio.to_thread(wait_for, lambda: not held_leases(server.url), SETTLE_WITHIN_S)
    finally:
        for channel in channels:
            await channel.close()
    admitted = len(first) + len(second)
    fail_open = sum(not answer.reservation_id for answer in first + second)
    leaked = held_leases(server.url)
    errors = ratelimiters.errors_logged() - errors_before
    passed = (admitted, fail_open, leaked, errors) == (LIMIT, 0, 0, 0)
    drill.record(
        expected=f"admitted == {LIMIT}, 0 fail-open admissions, 0 leases left, 0 errors logged",
        observed=f"admitted {admitted} ({len(first)} + {len(second)}), {fail_open} fail-open, "
        f"{leaked} leases left, {errors} errors logged",
        passed=passed,
        mode=mode,
        delay_ms=delay_ms,
        callers=2 * CALLERS_PER_REPLICA * REPLICAS,
        gave_up=gave_up,
        admitted=admitted,
        limit=LIMIT,
        leaked_leases=leaked,
        peak_rss_mib=round(max(u.peak_rss_mib for u in meter.usage.values()), 1),
        duration_s=round(time.monotonic() - started, 2),
    )
    assert (admitted, fail_open, leaked, errors) == (LIMIT, 0, 0, 0)


# --- a ratelimiter stopped under load -----------------------------------------------------

STREAMS = 20
# 200 tokens at 50 tokens/s: every stream is still running when the ratelimiter is stopped.
TOKENS_PER_S = 50.0
ANSWER_TOKENS = 200
STREAM_DEADLINE_S = 60.0
SETTLED_WITHIN_S = 15.0


async def _paced_streams(router_address: str, started: asyncio.Event) -> list[str]:
    """Runs the streams; sets `started` once each has its first text (so its reservation is
    held); returns each stream's final status code name."""
    first_text = 0

    async def one(stub: router_service_pb2_grpc.RouterServiceStub) -> str:
        nonlocal first_text
        seen = False
        try:
            async for event in stub.StreamComplete(
                chat_request(), metadata=AUTH_METADATA, timeout=STREAM_DEADLINE_S
            ):
                if not seen and event.HasField("delta"):
                    seen = True
                    first_text += 1
                    if first_text == STREAMS:
                        started.set()
        except grpc.aio.AioRpcError as error:
            return str(error.code().name)
        return "OK"

    async with grpc.aio.insecure_channel(router_address) as channel:
        stub = router_service_pb2_grpc.RouterServiceStub(channel)
        return list(await asyncio.gather(*(one(stub) for _ in range(STREAMS))))


@pytest.mark.slow_drill
# With no other replica, the settlements made while none runs land once the restarted one
# serves: the router retries them with backoff within its settle budget.
@pytest.mark.parametrize("replacement", ["second_replica_running", "restarted_in_place"])
async def test_sigterm_of_a_ratelimiter_under_load_loses_no_settlement(
    replacement: str, tmp_path: pathlib.Path, drill: DrillRecord
) -> None:
    store = RedisServer()
    store.start()
    second = replacement == "second_replica_running"
    env = mesh_env(
        mesh_policy(tmp_path, tokens_per_s=TOKENS_PER_S, answer_tokens=ANSWER_TOKENS),
        LLMMESH_REDIS_URL=store.url,
    )
    with (tmp_path / "services.log").open("ab") as log:
        # With a second replica the router addresses both from the start, as a headless
        # Service would; otherwise only the one that is stopped and later restarted.
        mesh = Mesh(
            free_mesh_ports(),
            env,
            log_to=log,
            replica_ports={"ratelimiter": [free_port()]} if second else None,
        )
        try:
            mesh.start()
            stopped = mesh.processes["ratelimiter"].process
            # The processes that run throughout (the stopped one cannot be sampled to the end).
            meter = UsageMeter(
                {
                    member.service: psutil.Process(member.process.pid)
                    for member in [*mesh.processes.values(), *mesh.replicas]
                    if member.process is not stopped
                }
            )
            started = asyncio.Event()
            with meter.measuring():
                streams = asyncio.ensure_future(_paced_streams(mesh.router_address, started))
                await asyncio.wait_for(started.wait(), STREAM_DEADLINE_S)
                stopped.send_signal(signal.SIGTERM)
                exit_code = await asyncio.to_thread(stopped.wait, STREAM_DEADLINE_S)
                outcomes = await streams
            if replacement == "restarted_in_place":
                # Every stream ended while no ratelimiter ran: their settlements wait for this.
                first = mesh.processes["ratelimiter"]
                await asyncio.to_thread(
                    mesh.add_replica, "ratelimiter", first.port, first.health_port
                )
            await asyncio.to_thread(
                wait_for,
                lambda: not reservation_states(store.url)["held"] and not held_leases(store.url),
                SETTLED_WITHIN_S,
            )
            records = reservation_states(store.url)
            leaked = held_leases(store.url)
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired):
                mesh.stop()
            store.close()
    lost = records["held"]
    completed = outcomes.count("OK")
    passed = (lost, leaked, completed, exit_code) == (0, 0, STREAMS, 0)
    drill.record(
        expected=f"{STREAMS} streams complete, 0 lost settlements, 0 leaked leases, exit 0",
        observed=f"{completed} complete, {lost} lost settlements, {leaked} leaked leases, "
        f"exit {exit_code}",
        passed=passed,
        replacement=replacement,
        streams=STREAMS,
        settled=records["done"],
        lost_settlements=lost,
        leaked_leases=leaked,
        peak_rss_mib=round(max(u.peak_rss_mib for u in meter.usage.values()), 1),
    )
    assert (lost, leaked, completed, exit_code) == (0, 0, STREAMS, 0)
