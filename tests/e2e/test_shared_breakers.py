"""Two router replicas share circuit breaker state through Redis: a circuit one opens is
open for the other, and a half-open circuit lets one probe through for both together."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import grpc
import grpc.aio
import pytest
import yaml

from llmmesh.common.v1 import chat_pb2
from llmmesh.policy import hash_api_key
from llmmesh.router.v1 import router_service_pb2, router_service_pb2_grpc
from llmmesh.runtime.errors import error_details
from llmmesh.testing.background import serving_in_background
from llmmesh.testing.fake_upstreams import FakeOpenAI, UpstreamProblem, http_error, slow_first_token
from llmmesh.testing.mesh import AUTH_METADATA, DEV_API_KEY, local_mesh
from llmmesh.testing.ports import free_port
from llmmesh.testing.redis_server import RedisServer

RECOVERY_TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with serving_in_background(FakeOpenAI()) as fake:
        yield fake


@pytest.fixture(scope="module")
def routers(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Addresses of two router replicas in front of one mesh, sharing one Redis."""
    directory = tmp_path_factory.mktemp("shared-breakers")
    policy = {
        "tenants": [{"name": "dev", "api_keys_sha256": [hash_api_key(DEV_API_KEY)]}],
        "models": [{"name": "flaky", "provider": "upstream", "upstream_model": "flaky"}],
        "routing": {
            "retry": {"max_attempts_per_model": 1},
            "breaker": {"consecutive_failures": 2, "min_calls": 100, "shared": True,
                        "recovery_timeout_s": RECOVERY_TIMEOUT_S},
        },
        "providers": {"instances": [{"name": "upstream", "backend": "openai",
                                      "base_url": upstream.base_url, "api_key_env": ""}]},
    }  # fmt: skip
    (directory / "policy.yaml").write_text(yaml.safe_dump(policy))
    redis = RedisServer()
    redis.start()
    env = {"LLMMESH_POLICY_FILE": str(directory / "policy.yaml"), "LLMMESH_REDIS_URL": redis.url}
    try:
        with local_mesh(directory / "services.log", env) as mesh:
            second = mesh.add_replica("router", free_port(), free_port())
            yield [mesh.router_address, second.address]
    finally:
        redis.close()


@pytest.fixture
async def stubs(
    routers: list[str],
) -> AsyncIterator[list[router_service_pb2_grpc.RouterServiceStub]]:
    channels = [grpc.aio.insecure_channel(address) for address in routers]
    yield [router_service_pb2_grpc.RouterServiceStub(channel) for channel in channels]
    for channel in channels:
        await channel.close()


def _request() -> router_service_pb2.StreamCompleteRequest:
    return router_service_pb2.StreamCompleteRequest(
        model="flaky",
        messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=uuid.uuid4().hex)],
    )


async def _outcome(stub: router_service_pb2_grpc.RouterServiceStub) -> str:
    """ "ok", or the error reason."""
    try:
        async for _ in stub.StreamComplete(_request(), metadata=AUTH_METADATA, timeout=10):
            pass
    except grpc.aio.AioRpcError as error:
        return error_details(error).reason
    return "ok"


async def test_a_circuit_opened_by_one_replica_is_open_for_the_other(
    stubs: list[router_service_pb2_grpc.RouterServiceStub], upstream: FakeOpenAI
) -> None:
    first, second = stubs
    upstream.enqueue(*[http_error(UpstreamProblem.SERVICE_UNAVAILABLE)] * 2)
    assert [await _outcome(first), await _outcome(first)] == ["NO_MODEL_AVAILABLE"] * 2
    calls = upstream.request_count
    await asyncio.sleep(0.2)  # the transition travels through Redis pub/sub
    assert await _outcome(second) == "NO_MODEL_AVAILABLE"
    assert upstream.request_count == calls, "the second replica must not call an open circuit"

    await asyncio.sleep(RECOVERY_TIMEOUT_S)
    upstream.enqueue(slow_first_token(0.5))
    outcomes = await asyncio.gather(*(_outcome(stub) for stub in (first, second) * 3))
    assert outcomes.count("ok") == 1, outcomes
    assert upstream.request_count == calls + 1, "one probe for both replicas"
    await asyncio.sleep(0.2)
    assert [await _outcome(first), await _outcome(second)] == ["ok", "ok"]
