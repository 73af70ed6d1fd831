"""Mesh security in one process: identities and allow-lists, the token, watched files, the
log throttle, the start rule's messages, and a public port that serves TLS."""

from __future__ import annotations

import asyncio
import os
import pathlib

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llmmesh.local_ca import LocalCertificateAuthority
from llmmesh.runtime.log_throttle import LogThrottle
from llmmesh.runtime.mesh_security import (
    MeshCredentials,
    MeshSecurityError,
    mesh_serving,
    public_serving,
)
from llmmesh.runtime.mesh_token import MeshToken, TokenConfigError
from llmmesh.runtime.peer_identity import AllowedPeers, CallerRules, certificate_identity
from llmmesh.runtime.server import ServiceHost
from llmmesh.runtime.settings import ServiceSettings
from llmmesh.runtime.tls import TlsConfigError, TlsFiles, read_certificates
from llmmesh.runtime.watched_files import WatchedFiles, check_all_now
from llmmesh.runtime.wiring import Wiring

TOKEN = "s3cret-mesh-token-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class RatelimiterLikeSettings(ServiceSettings):
    model_config = {
        **ServiceSettings.model_config,
        "env_prefix": "LLMMESH_RATELIMITER_",
        "populate_by_name": True,
    }


@pytest.mark.parametrize(
    ("auth_context", "identity"),
    [
        ({"peer_spiffe_id": [b"spiffe://llmmesh/router"], "x509_common_name": [b"x"]},
         "spiffe://llmmesh/router"),
        ({"peer_uri": [b"spiffe://corp/ns/a/sa/router"], "x509_common_name": [b"x"]},
         "spiffe://corp/ns/a/sa/router"),
        ({"x509_common_name": [b"router"]}, "router"),
        ({"transport_security_type": [b"ssl"]}, None),
        ({}, None),
    ],
)  # fmt: skip
def test_the_identity_is_the_spiffe_id_then_any_uri_then_the_common_name(
    auth_context: dict[str, list[bytes]], identity: str | None
) -> None:
    assert certificate_identity(auth_context) == identity


def test_a_bare_name_allows_its_spiffe_id_and_common_name_and_nothing_else() -> None:
    allowed = AllowedPeers.of(["router", "spiffe://corp/ns/a/sa/cache"])
    assert allowed.allows("spiffe://llmmesh/router")
    assert allowed.allows("router")
    assert allowed.allows("spiffe://corp/ns/a/sa/cache")
    assert not allowed.allows("cache")
    assert not allowed.allows("spiffe://llmmesh/routers")
    assert not allowed.allows("spiffe://evil/router")


def test_caller_rules_name_the_exceptions_and_default_the_rest() -> None:
    rules = CallerRules(default=("router",), by_method={"Embed": ("router", "cache")})
    assert rules.allowed("Embed").allows("spiffe://llmmesh/cache")
    assert not rules.allowed("Generate").allows("spiffe://llmmesh/cache")
    assert rules.allowed("Generate").allows("spiffe://llmmesh/router")


def test_the_token_accepts_every_line_of_its_file_sends_the_first_and_follows_a_rotation(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\n")
    token = MeshToken.from_file(str(path))
    assert token.accepts(TOKEN)
    assert not token.accepts(TOKEN[:-1])
    assert not token.accepts(None)
    assert not token.accepts("")
    rotated = "rotated-mesh-token-9876543210"
    path.write_text(f"{rotated}\n{TOKEN}\n")
    check_all_now()
    assert token.accepts(rotated)
    assert token.accepts(TOKEN)
    assert token.outgoing() == rotated


@pytest.mark.parametrize(
    "value", ["short-token", "has a space in it somewhere", "\n\n", "ünïcode-token-long-enough"]
)
def test_unusable_tokens_are_refused_without_repeating_them(value: str) -> None:
    with pytest.raises(TokenConfigError) as caught:
        MeshToken.from_value(value)
    assert not value.strip() or value.strip() not in str(caught.value)


def test_watched_files_keep_the_last_good_value_until_the_files_agree_again(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "value"
    path.write_text("1")
    clock = Clock()
    watch = WatchedFiles([str(path)], lambda: int(path.read_text()), what="test", clock=clock)
    path.write_text("not a number")
    assert watch.value == 1  # not due yet
    clock.now += 1.0
    assert watch.value == 1  # due, but the new contents do not load
    assert watch.generation == 1
    path.write_text("2")
    os.utime(path, ns=(1, 1))  # a change the modification time alone would not show
    clock.now += 1.0
    assert watch.value == 2
    assert watch.generation == 2


def test_the_log_throttle_lets_one_line_a_minute_through_per_key_and_counts_the_rest() -> None:
    clock = Clock()
    throttle = LogThrottle(interval_s=60, max_keys=2, clock=clock)
    assert throttle.admit("a") == 0
    assert [throttle.admit("a") for _ in range(5)] == [None] * 5
    assert throttle.admit("b") == 0
    clock.now = 61
    assert throttle.admit("a") == 5
    # A third key does not grow the memory past max_keys.
    assert throttle.admit("c") == 0
    assert len(throttle._entries) <= 2


def test_without_credentials_an_internal_service_does_not_start_and_is_told_which_variables() -> (
    None
):
    settings = RatelimiterLikeSettings()
    credentials = MeshCredentials.from_settings(settings)
    with pytest.raises(MeshSecurityError) as caught:
        credentials.require(settings)
    message = str(caught.value)
    for variable in ("LLMMESH_RATELIMITER_TLS_CERT_FILE", "LLMMESH_RATELIMITER_TLS_KEY_FILE",
                     "LLMMESH_RATELIMITER_TLS_CA_FILE", "LLMMESH_MESH_TOKEN_FILE",
                     "LLMMESH_INSECURE_PEERS=true"):  # fmt: skip
        assert variable in message
    assert "\n" not in message
    insecure = RatelimiterLikeSettings(insecure_peers=True)
    MeshCredentials.from_settings(insecure).require(insecure)


def test_a_key_that_does_not_match_its_certificate_is_refused_naming_the_files(
    tmp_path: pathlib.Path,
) -> None:
    authority = LocalCertificateAuthority(tmp_path)
    router, cache = authority.issue("router"), authority.issue("cache")
    with pytest.raises(TlsConfigError) as caught:
        read_certificates(TlsFiles(str(router.cert_file), str(cache.key_file), ""))
    assert str(router.cert_file) in str(caught.value)
    with pytest.raises(TlsConfigError, match="cannot read"):
        read_certificates(TlsFiles(str(tmp_path / "missing.crt"), str(router.key_file), ""))


def test_a_serving_service_needs_its_own_certificate_beside_a_ca(tmp_path: pathlib.Path) -> None:
    authority = LocalCertificateAuthority(tmp_path)
    settings = RatelimiterLikeSettings(tls_ca_file=str(authority.ca_file))
    credentials = MeshCredentials.from_settings(settings)
    with pytest.raises(MeshSecurityError, match="LLMMESH_RATELIMITER_TLS_CERT_FILE"):
        mesh_serving(CallerRules(("router",)))(settings, credentials)


async def test_a_public_port_with_a_certificate_and_no_client_ca_serves_tls_to_anyone(
    tmp_path: pathlib.Path,
) -> None:
    authority = LocalCertificateAuthority(tmp_path)
    served = authority.issue("router")
    transport = public_serving(
        TlsFiles(str(served.cert_file), str(served.key_file)), variables="TEST_*"
    )
    host = ServiceHost(
        service_name="t.Public",
        settings=ServiceSettings(listen_host="127.0.0.1", port=0),
        wiring=Wiring(servicer=None),
        add_servicer=lambda servicer, server: None,
        transport=transport,
    )
    task = asyncio.create_task(host.run())
    while host.port == 0:
        await asyncio.sleep(0.01)
    request = health_pb2.HealthCheckRequest()
    tls = grpc.ssl_channel_credentials(root_certificates=authority.certificate_pem)
    async with grpc.aio.secure_channel(f"127.0.0.1:{host.port}", tls) as channel:
        assert await health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    host.request_stop()
    await task
