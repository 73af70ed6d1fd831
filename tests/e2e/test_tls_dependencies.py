"""The mesh's own dependencies over TLS: Redis as `rediss://` with a CA file, and an
`https://` OTLP endpoint with the standard certificate variable, each with a CA that is not
the mesh's (as a managed Redis or collector would have)."""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Iterator

import grpc
import pytest
import redis
import yaml

from llmmesh.common.v1 import caching_pb2, chat_pb2
from llmmesh.local_ca import LocalCertificateAuthority
from llmmesh.mesh import Mesh
from llmmesh.policy import hash_api_key
from llmmesh.router.v1 import router_pb2, router_service_pb2, router_service_pb2_grpc
from llmmesh.testing.mesh import AUTH_METADATA, DEV_API_KEY, local_mesh
from llmmesh.testing.otlp_collector import OtlpCollector
from llmmesh.testing.redis_server import RedisServer

SERVICE_NAMES = {"llmmesh-router", "llmmesh-ratelimiter", "llmmesh-cache", "llmmesh-provider"}


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> LocalCertificateAuthority:
    return LocalCertificateAuthority(tmp_path_factory.mktemp("infra-ca"), name="infra CA")


@pytest.fixture(scope="module")
def tls_redis(authority: LocalCertificateAuthority) -> Iterator[RedisServer]:
    server = RedisServer(tls=authority.issue("redis", identity=""))
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def collector(authority: LocalCertificateAuthority) -> Iterator[OtlpCollector]:
    receiver = OtlpCollector(tls=authority.issue("collector", identity=""))
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def mesh(
    tmp_path_factory: pytest.TempPathFactory,
    authority: LocalCertificateAuthority,
    tls_redis: RedisServer,
    collector: OtlpCollector,
) -> Iterator[Mesh]:
    directory = tmp_path_factory.mktemp("tls-dependencies")
    policy = {
        "tenants": [{"name": "dev", "api_keys_sha256": [hash_api_key(DEV_API_KEY)]}],
        "models": [{"name": "sim", "provider": "simulated", "upstream_model": "sim"}],
        "cache": {"defaults": {"mode": "exact"}},
        "routing": {"breaker": {"shared": True}},
        "providers": {"instances": [{"name": "simulated", "backend": "simulated"}]},
    }
    (directory / "policy.yaml").write_text(yaml.safe_dump(policy))
    env = {
        "LLMMESH_POLICY_FILE": str(directory / "policy.yaml"),
        "LLMMESH_REDIS_URL": tls_redis.url,
        "LLMMESH_REDIS_CA_FILE": str(authority.ca_file),
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(authority.ca_file),
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    with local_mesh(pathlib.Path(directory / "services.log"), env) as running:
        yield running


def _ask(mesh: Mesh, prompt: str) -> router_service_pb2.CompleteResponse:
    with grpc.insecure_channel(mesh.router_address) as channel:
        response: router_service_pb2.CompleteResponse = router_service_pb2_grpc.RouterServiceStub(
            channel
        ).Complete(
            router_service_pb2.CompleteRequest(
                model="sim",
                messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=prompt)],
                cache=router_pb2.CacheControl(mode=caching_pb2.CACHE_MODE_EXACT),
            ),
            metadata=AUTH_METADATA,
            timeout=10,
        )
    return response


def test_limits_and_answers_live_in_redis_over_tls(
    mesh: Mesh, tls_redis: RedisServer, authority: LocalCertificateAuthority
) -> None:
    prompt = f"a question {uuid.uuid4().hex}"
    first, second = _ask(mesh, prompt), _ask(mesh, prompt)
    assert first.summary.cache_status == caching_pb2.CACHE_STATUS_MISS
    assert second.summary.cache_status == caching_pb2.CACHE_STATUS_EXACT
    client = redis.Redis.from_url(tls_redis.url, ssl_ca_certs=str(authority.ca_file))
    try:
        keys = [key.decode() for key in client.scan_iter(count=1000)]
    finally:
        client.close()
    assert any(key.startswith("llmmesh:cache") for key in keys), keys
    assert any("llmmesh:cache" not in key for key in keys), "no ratelimiter keys"


def test_every_service_exports_spans_to_an_https_collector(
    mesh: Mesh, collector: OtlpCollector
) -> None:
    _ask(mesh, f"traced {uuid.uuid4().hex}")
    spans = collector.wait_for(lambda spans: {span.service for span in spans} >= SERVICE_NAMES)
    assert {span.service for span in spans} >= SERVICE_NAMES
