"""Three ratelimiter processes (the real entry point) on one Redis admit exactly the limit."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import grpc.aio
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llmmesh.ratelimit.v1 import ratelimit_pb2, ratelimit_service_pb2, ratelimit_service_pb2_grpc
from llmmesh.testing.ports import free_port

PROCESSES = 3
CALLERS = 300
START_TIMEOUT_S = 20.0
MONTH_S = 30 * 86400

POLICY = {
    "tenants": [
        {"name": "by-requests", "tier": "requests"},
        {"name": "by-tokens", "tier": "tokens"},
    ],
    "limits": {
        "tiers": {
            "requests": [
                {"name": "rpm", "kind": "requests", "scope": "tenant", "limit": 100,
                 "window_s": MONTH_S},
            ],
            "tokens": [
                {"name": "tpm", "kind": "tokens", "scope": "tenant_model", "limit": 10_000,
                 "window_s": MONTH_S},
            ],
        }
    },
}  # fmt: skip


@pytest.fixture
def service_ports(redis_url: str, tmp_path: pathlib.Path) -> Iterator[list[int]]:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY))
    ports = [free_port() for _ in range(PROCESSES)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "llmmesh_ratelimiter"],
            env={
                **os.environ,
                "LLMMESH_REDIS_URL": redis_url,
                "LLMMESH_POLICY_FILE": str(policy_file),
                "LLMMESH_RATELIMITER_PORT": str(port),
                "LLMMESH_RATELIMITER_LISTEN_HOST": "127.0.0.1",
                "LLMMESH_RATELIMITER_DECISION_TIMEOUT_S": "5",
                "LLMMESH_RATELIMITER_GRACE_PERIOD_S": "0",
                # Called directly by the test, which is no mesh peer.
                "LLMMESH_INSECURE_PEERS": "true",
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def wait_serving(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        assert time.monotonic() < deadline, "a ratelimiter process did not start serving"
        await asyncio.sleep(0.1)


async def test_three_service_processes_admit_exactly_the_request_and_token_limits(
    service_ports: list[int],
) -> None:
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for port in service_ports]
    try:
        await asyncio.gather(*(wait_serving(channel) for channel in channels))
        stubs = [ratelimit_service_pb2_grpc.RateLimitServiceStub(c) for c in channels]

        async def rush(tenant: str, tokens: int) -> int:
            answers = await asyncio.gather(
                *(
                    stubs[index % PROCESSES].Reserve(
                        ratelimit_service_pb2.ReserveRequest(
                            tenant=tenant, model="m", estimated_tokens=tokens
                        )
                    )
                    for index in range(CALLERS)
                )
            )
            allowed = [a for a in answers if a.decision == ratelimit_pb2.DECISION_ALLOW]
            assert all(answer.reservation_id for answer in allowed)
            return len(allowed)

        assert await rush("by-requests", 1) == 100
        assert await rush("by-tokens", 100) == 100  # 10 000 tokens at 100 each
    finally:
        for channel in channels:
            await channel.close()
