"""Who may call whom, on a running mesh with mTLS: each internal RPC refuses a caller
without a certificate and one with the wrong identity, and serves its allowed peers; an
attacker on the same network can neither poison the cache, hold a tenant's quota nor
spend the provider's keys, and the tenants' traffic through the router goes on."""

from __future__ import annotations

import concurrent.futures
import importlib.resources
import pathlib
import uuid
from collections.abc import Callable, Iterator

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llmmesh.cache.v1 import cache_pb2, cache_service_pb2, cache_service_pb2_grpc
from llmmesh.common.v1 import caching_pb2, chat_pb2
from llmmesh.local_ca import LocalCertificateAuthority
from llmmesh.mesh import Mesh
from llmmesh.policy import DEFAULT_POLICY
from llmmesh.provider.v1 import provider_service_pb2, provider_service_pb2_grpc
from llmmesh.ratelimit.v1 import ratelimit_service_pb2, ratelimit_service_pb2_grpc
from llmmesh.router.v1 import router_pb2, router_service_pb2, router_service_pb2_grpc
from llmmesh.runtime.errors import error_details
from llmmesh.testing.mesh import AUTH_METADATA, local_mesh, peer_channel_credentials

TENANT = "dev"
MODEL = "sim-fast"
CALL_TIMEOUT_S = 10
FORGED = "FORGED ANSWER planted by a caller outside the mesh"
REFUSED_AT_HANDSHAKE = grpc.StatusCode.UNAVAILABLE

Call = Callable[[grpc.Channel], object]


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("security") / "services.log"


@pytest.fixture(scope="module")
def mesh(log_path: pathlib.Path) -> Iterator[Mesh]:
    # The embedded policy, with semantic caching: the cache embeds through the provider.
    policy = yaml.safe_load(
        importlib.resources.files("llmmesh").joinpath(DEFAULT_POLICY).read_text()
    )
    policy["cache"] = {"defaults": {"mode": "semantic", "embedder": "default"}}
    policy_file = log_path.parent / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    with local_mesh(log_path, {"LLMMESH_POLICY_FILE": str(policy_file)}) as running:
        yield running


def _messages(prompt: str) -> list[chat_pb2.ChatMessage]:
    return [chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=prompt)]


def _scope(prompt: str) -> cache_pb2.CacheScope:
    return cache_pb2.CacheScope(tenant=TENANT, model=MODEL, messages=_messages(prompt))


def _reserve(channel: grpc.Channel) -> ratelimit_service_pb2.ReserveResponse:
    stub = ratelimit_service_pb2_grpc.RateLimitServiceStub(channel)
    request = ratelimit_service_pb2.ReserveRequest(
        tenant=TENANT, model=MODEL, estimated_tokens=10, request_id=uuid.uuid4().hex
    )
    response: ratelimit_service_pb2.ReserveResponse = stub.Reserve(request, timeout=CALL_TIMEOUT_S)
    return response


def _settle_or_release(method: str) -> Callable[[Mesh], Call]:
    """A call on a reservation that the router's own certificate took first."""

    def bind(mesh: Mesh) -> Call:
        with _channel(mesh, "ratelimiter", "router") as router_channel:
            reservation_id = _reserve(router_channel).reservation_id

        def call(channel: grpc.Channel) -> object:
            stub = ratelimit_service_pb2_grpc.RateLimitServiceStub(channel)
            if method == "Settle":
                return stub.Settle(
                    ratelimit_service_pb2.SettleRequest(
                        reservation_id=reservation_id, actual_tokens=5
                    ),
                    timeout=CALL_TIMEOUT_S,
                )
            return stub.Release(
                ratelimit_service_pb2.ReleaseRequest(reservation_id=reservation_id),
                timeout=CALL_TIMEOUT_S,
            )

        return call

    return bind


def _fixed(call: Call) -> Callable[[Mesh], Call]:
    return lambda mesh: call


def _cache(channel: grpc.Channel) -> cache_service_pb2_grpc.CacheServiceStub:
    return cache_service_pb2_grpc.CacheServiceStub(channel)


def _provider(channel: grpc.Channel) -> provider_service_pb2_grpc.ProviderServiceStub:
    return provider_service_pb2_grpc.ProviderServiceStub(channel)


def _store(channel: grpc.Channel, prompt: str = "a question", text: str = "an answer") -> object:
    answer = cache_pb2.CachedAnswer(
        chunks=[text],
        finish_reason=chat_pb2.FINISH_REASON_STOP,
        usage=chat_pb2.Usage(input_tokens=3, output_tokens=3),
        model=MODEL,
        provider="simulated",
    )
    return _cache(channel).Store(
        cache_service_pb2.StoreRequest(scope=_scope(prompt), answer=answer),
        timeout=CALL_TIMEOUT_S,
    )


def _generate(channel: grpc.Channel) -> object:
    request = provider_service_pb2.GenerateRequest(
        instance="simulated",
        model=MODEL,
        messages=_messages("hello"),
        parameters=chat_pb2.GenerationParameters(max_tokens=4),
    )
    return list(_provider(channel).Generate(request, timeout=CALL_TIMEOUT_S))


# (service, RPC): how to call it, a peer that may, and a mesh peer that may not.
RPCS: dict[tuple[str, str], tuple[Callable[[Mesh], Call], str, str]] = {
    ("ratelimiter", "Reserve"): (_fixed(_reserve), "router", "cache"),
    ("ratelimiter", "Settle"): (_settle_or_release("Settle"), "router", "provider"),
    ("ratelimiter", "Release"): (_settle_or_release("Release"), "router", "cache"),
    ("cache", "Lookup"): (
        _fixed(lambda ch: _cache(ch).Lookup(
            cache_service_pb2.LookupRequest(scope=_scope("a question")), timeout=CALL_TIMEOUT_S)),
        "router", "provider",
    ),
    ("cache", "Store"): (_fixed(_store), "router", "ratelimiter"),
    ("cache", "Invalidate"): (
        _fixed(lambda ch: _cache(ch).Invalidate(
            cache_service_pb2.InvalidateRequest(tenant=TENANT), timeout=CALL_TIMEOUT_S)),
        "router", "provider",
    ),
    # The cache may embed, but never generate on the provider's keys.
    ("provider", "Generate"): (_fixed(_generate), "router", "cache"),
    ("provider", "Embed"): (
        _fixed(lambda ch: _provider(ch).Embed(
            provider_service_pb2.EmbedRequest(inputs=["hello"]), timeout=CALL_TIMEOUT_S)),
        "cache", "ratelimiter",
    ),
    ("provider", "ListModels"): (
        _fixed(lambda ch: _provider(ch).ListModels(
            provider_service_pb2.ListModelsRequest(), timeout=CALL_TIMEOUT_S)),
        "router", "cache",
    ),
}  # fmt: skip


FIRST_RPC = {"ratelimiter": "Reserve", "cache": "Lookup", "provider": "Embed"}


def _channel(mesh: Mesh, service: str, identity: str | None) -> grpc.Channel:
    """A TLS channel as `identity` (a certificate from the mesh's CA), or without a client
    certificate at all when `identity` is None."""
    address = mesh.processes[service].address
    if identity is None:
        assert mesh.credentials is not None
        ca = mesh.credentials.authority.certificate_pem
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=ca))
    return grpc.secure_channel(address, peer_channel_credentials(mesh, identity))


def _outcome(call: Call, channel: grpc.Channel) -> tuple[grpc.StatusCode, str]:
    with channel:
        try:
            call(channel)
        except grpc.RpcError as error:
            details = error_details(error)
            return details.code, details.reason
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize(("service", "method"), list(RPCS), ids=[f"{s}.{m}" for s, m in RPCS])
def test_each_rpc_refuses_no_certificate_and_the_wrong_identity_and_serves_its_peer(
    mesh: Mesh, service: str, method: str
) -> None:
    bind, allowed, refused = RPCS[(service, method)]
    call = bind(mesh)
    assert _outcome(call, _channel(mesh, service, None))[0] == REFUSED_AT_HANDSHAKE
    assert _outcome(call, _channel(mesh, service, refused)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "PEER_NOT_ALLOWED",
    )
    assert _outcome(call, _channel(mesh, service, allowed)) == (grpc.StatusCode.OK, "")


@pytest.mark.parametrize("service", ["ratelimiter", "cache", "provider"])
def test_strangers_are_refused_even_with_the_right_name_or_a_certificate_from_the_ca(
    mesh: Mesh, service: str, tmp_path: pathlib.Path
) -> None:
    bound = RPCS[(service, FIRST_RPC[service])][0](mesh)
    address = mesh.processes[service].address
    # Plain text to a TLS port.
    assert _outcome(bound, grpc.insecure_channel(address))[0] == REFUSED_AT_HANDSHAKE
    # A certificate that claims to be the router, from a CA the mesh does not trust.
    foreign = LocalCertificateAuthority(tmp_path / "foreign").issue("router")
    assert mesh.credentials is not None
    impostor = grpc.ssl_channel_credentials(
        root_certificates=mesh.credentials.authority.certificate_pem,
        private_key=foreign.key_file.read_bytes(),
        certificate_chain=foreign.cert_file.read_bytes(),
    )
    assert _outcome(bound, grpc.secure_channel(address, impostor))[0] == REFUSED_AT_HANDSHAKE
    # The mesh's CA vouches for it, but no allow-list names it.
    assert _outcome(bound, _channel(mesh, service, "intruder")) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "PEER_NOT_ALLOWED",
    )


def _ask_router(mesh: Mesh, prompt: str) -> router_service_pb2.CompleteResponse:
    with grpc.insecure_channel(mesh.router_address) as channel:
        response: router_service_pb2.CompleteResponse = router_service_pb2_grpc.RouterServiceStub(
            channel
        ).Complete(
            router_service_pb2.CompleteRequest(
                model=MODEL,
                messages=_messages(prompt),
                cache=router_pb2.CacheControl(mode=caching_pb2.CACHE_MODE_EXACT),
            ),
            metadata=AUTH_METADATA,
            timeout=CALL_TIMEOUT_S,
        )
    return response


def test_callers_without_credentials_cannot_poison_lock_out_or_spend_and_tenants_go_on(
    mesh: Mesh,
) -> None:
    prompt = f"What is the capital of France? {uuid.uuid4().hex}"
    attacks: list[tuple[str, Call]] = [
        ("cache", lambda ch: _store(ch, prompt, FORGED)),
        ("ratelimiter", _reserve),
        ("provider", _generate),
    ]

    def attack(index: int) -> tuple[grpc.StatusCode, str]:
        service, call = attacks[index % len(attacks)]
        address = mesh.processes[service].address
        return _outcome(call, grpc.insecure_channel(address))

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        attempts = [pool.submit(attack, index) for index in range(60)]
        answers = [pool.submit(_ask_router, mesh, f"tenant call {i}") for i in range(6)]
        outcomes = [attempt.result() for attempt in attempts]
        served = [answer.result() for answer in answers]
    assert {code for code, _ in outcomes} == {REFUSED_AT_HANDSHAKE}
    assert all(response.text for response in served)
    # The prompt the attacker tried to poison is a miss, then the model's own answer.
    first = _ask_router(mesh, prompt)
    assert first.summary.cache_status == caching_pb2.CACHE_STATUS_MISS
    assert FORGED not in first.text


def test_a_refused_peer_is_logged_at_most_once_a_minute(mesh: Mesh, log_path: pathlib.Path) -> None:
    def refusals() -> list[str]:
        return [
            line
            for line in log_path.read_text().splitlines()
            if '"peer_refused"' in line and '"ratelimiter"' in line and "PEER_NOT_ALLOWED" in line
        ]

    call = RPCS[("ratelimiter", "Reserve")][0](mesh)
    assert _outcome(call, _channel(mesh, "ratelimiter", "intruder"))[0] == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    before = len(refusals())
    for _ in range(20):
        _outcome(call, _channel(mesh, "ratelimiter", "intruder"))
    assert before >= 1
    assert len(refusals()) == before


@pytest.mark.parametrize("service", ["ratelimiter", "cache", "provider"])
def test_health_needs_no_credentials_on_the_health_port_and_no_allow_list_on_the_mesh_port(
    mesh: Mesh, service: str
) -> None:
    member = mesh.processes[service]
    request = health_pb2.HealthCheckRequest()
    with grpc.insecure_channel(member.health_address) as channel:
        plain = health_pb2_grpc.HealthStub(channel).Check(request, timeout=CALL_TIMEOUT_S)
    with _channel(mesh, service, "intruder") as channel:
        stranger = health_pb2_grpc.HealthStub(channel).Check(request, timeout=CALL_TIMEOUT_S)
    assert plain.status == stranger.status == health_pb2.HealthCheckResponse.SERVING


def test_the_cache_embeds_through_the_provider_with_its_own_certificate(mesh: Mesh) -> None:
    with _channel(mesh, "cache", "router") as channel:
        stored = _store(channel, "What is the capital of France?", "Paris.")
        hit = _cache(channel).Lookup(
            cache_service_pb2.LookupRequest(
                scope=_scope("What is the capital city of France?"), similarity_threshold=0.5
            ),
            timeout=CALL_TIMEOUT_S,
        )
    assert stored.stored  # type: ignore[attr-defined]
    assert hit.status == caching_pb2.CACHE_STATUS_SEMANTIC
