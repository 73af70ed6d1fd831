"""Where mTLS is off, a mesh token admits peers: the right token is served, a wrong or
missing one is UNAUTHENTICATED, health needs none, and the tenants' traffic flows."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llmmesh.cache.v1 import cache_pb2, cache_service_pb2, cache_service_pb2_grpc
from llmmesh.common.v1 import chat_pb2
from llmmesh.mesh import Mesh
from llmmesh.provider.v1 import provider_service_pb2, provider_service_pb2_grpc
from llmmesh.ratelimit.v1 import ratelimit_service_pb2, ratelimit_service_pb2_grpc
from llmmesh.router.v1 import router_service_pb2, router_service_pb2_grpc
from llmmesh.runtime.errors import error_details
from llmmesh.runtime.mesh_token import METADATA_KEY
from llmmesh.testing.mesh import AUTH_METADATA, local_mesh

TIMEOUT_S = 10
MESSAGES = [chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content="hello")]

CALLS = {
    "ratelimiter": lambda channel, metadata: ratelimit_service_pb2_grpc.RateLimitServiceStub(
        channel
    ).Reserve(
        ratelimit_service_pb2.ReserveRequest(tenant="dev", model="sim-fast", estimated_tokens=5),
        metadata=metadata,
        timeout=TIMEOUT_S,
    ),
    "cache": lambda channel, metadata: cache_service_pb2_grpc.CacheServiceStub(channel).Lookup(
        cache_service_pb2.LookupRequest(
            scope=cache_pb2.CacheScope(tenant="dev", model="sim-fast", messages=MESSAGES)
        ),
        metadata=metadata,
        timeout=TIMEOUT_S,
    ),
    "provider": lambda channel, metadata: list(
        provider_service_pb2_grpc.ProviderServiceStub(channel).Generate(
            provider_service_pb2.GenerateRequest(
                instance="simulated", model="sim-fast", messages=MESSAGES
            ),
            metadata=metadata,
            timeout=TIMEOUT_S,
        )
    ),
}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    log_path: pathlib.Path = tmp_path_factory.mktemp("token") / "services.log"
    with local_mesh(log_path, peers="token") as running:
        yield running


def _token(mesh: Mesh) -> str:
    assert mesh.credentials is not None
    return mesh.credentials.token


@pytest.mark.parametrize("service", sorted(CALLS))
@pytest.mark.parametrize(
    ("presented", "expected"),
    [
        ("right", grpc.StatusCode.OK),
        ("wrong", grpc.StatusCode.UNAUTHENTICATED),
        (None, grpc.StatusCode.UNAUTHENTICATED),
    ],
)
def test_direct_calls_need_the_mesh_token(
    mesh: Mesh, service: str, presented: str | None, expected: grpc.StatusCode
) -> None:
    token = {"right": _token(mesh), "wrong": _token(mesh)[:-1] + "x", None: None}[presented]
    metadata = () if token is None else ((METADATA_KEY, token),)
    with grpc.insecure_channel(mesh.processes[service].address) as channel:
        try:
            CALLS[service](channel, metadata)
            outcome, reason = grpc.StatusCode.OK, ""
        except grpc.RpcError as error:
            details = error_details(error)
            outcome, reason = details.code, details.reason
    assert outcome == expected
    if expected != grpc.StatusCode.OK:
        assert reason == "PEER_UNAUTHENTICATED"


@pytest.mark.parametrize("service", sorted(CALLS))
def test_health_answers_without_a_token(mesh: Mesh, service: str) -> None:
    with grpc.insecure_channel(mesh.processes[service].address) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S
        )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_the_router_calls_its_peers_with_the_token(mesh: Mesh) -> None:
    with grpc.insecure_channel(mesh.router_address) as channel:
        response = router_service_pb2_grpc.RouterServiceStub(channel).Complete(
            router_service_pb2.CompleteRequest(model="auto", messages=MESSAGES),
            metadata=AUTH_METADATA,
            timeout=TIMEOUT_S,
        )
    assert response.text
