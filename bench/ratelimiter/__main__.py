"""Decisions per second and decision latency of one ratelimiter replica on a local Redis.

Run from the repository root: `.venv/bin/python -m bench.ratelimiter`. It starts its own
redis-server, measures Reserve decisions (three limits each: requests, tokens, concurrency)
first against the Redis backend directly, then through a replica serving gRPC in a separate
process, at a few client concurrencies, and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import grpc.aio
import uvloop

from llmmesh.ratelimit.v1 import ratelimit_pb2, ratelimit_service_pb2, ratelimit_service_pb2_grpc
from llmmesh.testing.ports import free_port
from llmmesh.testing.redis_server import RedisServer
from llmmesh_ratelimiter.admission import Admission
from llmmesh_ratelimiter.policy_holder import PolicyHolder
from llmmesh_ratelimiter.rate_policy import FailureMode, load_rate_policy
from llmmesh_ratelimiter.redis_backend import RedisBackend, connect_redis

# Capacities no run reaches, so every decision runs the full admit path (and writes).
POLICY = {
    "tenants": [{"name": "bench", "tier": "std"}],
    "limits": {
        "tiers": {
            "std": [
                {"name": "rpm", "kind": "requests", "scope": "tenant", "limit": 10**9,
                 "window_s": 60},
                {"name": "tpm", "kind": "tokens", "scope": "tenant", "limit": 10**11,
                 "window_s": 60},
                {"name": "in-flight", "kind": "concurrency", "scope": "tenant", "limit": 10**9},
            ]
        }
    },
}  # fmt: skip
ESTIMATED_TOKENS = 1200

Decide = Callable[[], Awaitable[bool]]


async def measure(decide: Decide, decisions: int, concurrency: int) -> tuple[float, float, float]:
    """(decisions per second, p50 ms, p99 ms) of `decisions` calls by `concurrency` workers."""
    latencies_ms: list[float] = []
    remaining = decisions

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            allowed = await decide()
            latencies_ms.append((time.perf_counter() - started) * 1000)
            if not allowed:
                raise RuntimeError("a benchmark decision was denied")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed_s = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies_ms, n=100)
    return decisions / elapsed_s, quantiles[49], quantiles[98]


async def bench_backend(
    redis_url: str, decisions: int, concurrency: int
) -> tuple[float, float, float]:
    backend = RedisBackend(
        connect_redis(redis_url, cluster=False, timeout_s=2.0, max_connections=64),
        max_in_flight=64,
    )
    admission = Admission(
        backend,
        PolicyHolder(load_rate_policy(POLICY)),
        decision_timeout_s=2.0,
        default_failure_mode=FailureMode.CLOSED,
        lease_ttl_s=300,
    )

    async def decide() -> bool:
        verdict = await admission.reserve("bench", "gpt-4o-mini", ESTIMATED_TOKENS, "")
        return verdict.allowed and not verdict.degraded

    try:
        await measure(decide, min(decisions, 500), concurrency)  # warm up: connections, scripts
        return await measure(decide, decisions, concurrency)
    finally:
        await backend.close()


async def bench_grpc(port: int, decisions: int, concurrency: int) -> tuple[float, float, float]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ratelimit_service_pb2_grpc.RateLimitServiceStub(channel)
        request = ratelimit_service_pb2.ReserveRequest(
            tenant="bench", model="gpt-4o-mini", estimated_tokens=ESTIMATED_TOKENS
        )

        async def decide() -> bool:
            answer = await stub.Reserve(request)
            return answer.decision == ratelimit_pb2.DECISION_ALLOW and bool(answer.reservation_id)

        await measure(decide, min(decisions, 500), concurrency)
        return await measure(decide, decisions, concurrency)


def start_replica(redis_url: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.ratelimiter.serve", str(port), redis_url, json.dumps(POLICY)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.kill()
        raise RuntimeError("the benchmark replica did not start")
    return process, port


async def run(decisions: int, concurrencies: list[int]) -> None:
    redis_server = RedisServer()
    redis_server.start()
    replica, port = start_replica(redis_server.url)
    rows = []
    try:
        for path in ("backend direct", "gRPC hop"):
            for concurrency in concurrencies:
                if path == "backend direct":
                    result = await bench_backend(redis_server.url, decisions, concurrency)
                else:
                    result = await bench_grpc(port, decisions, concurrency)
                rows.append((path, concurrency, *result))
    finally:
        replica.terminate()
        replica.wait()
        redis_server.close()
    print(
        f"ratelimiter Reserve, 3 limits per decision, {decisions} decisions per row; "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, redis-server, client, and replica on one host\n"
    )
    print("| path | concurrent callers | decisions/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for path, concurrency, rate, p50_ms, p99_ms in rows:
        print(f"| {path} | {concurrency} | {rate:,.0f} | {p50_ms:.2f} | {p99_ms:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    arguments = parser.parse_args()
    uvloop.run(run(arguments.decisions, arguments.concurrency))


if __name__ == "__main__":
    main()
