"""The router against fake upstreams with injected faults, all four services as processes:
fallbacks, retries, circuit breakers, streaming errors, coalescing, deadlines, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import grpc
import grpc.aio
import pytest
import yaml

from llmmesh.common.v1 import caching_pb2, chat_pb2
from llmmesh.mesh import Mesh
from llmmesh.policy import hash_api_key
from llmmesh.router.v1 import router_pb2, router_service_pb2, router_service_pb2_grpc
from llmmesh.runtime.errors import ErrorDetails, error_details
from llmmesh.testing.background import serving_in_background
from llmmesh.testing.fake_upstreams import (
    DEFAULT_ANSWER_CHUNKS,
    FakeOpenAI,
    Reply,
    UpstreamProblem,
    cut_stream,
    hang,
    http_error,
    rate_limited,
    slow_first_token,
    slow_tokens,
)
from llmmesh.testing.mesh import AUTH_METADATA, DEV_API_KEY, local_mesh

STALL_TIMEOUT_S = 2.0


def _policy(fakes: dict[str, FakeOpenAI], consecutive_failures: int) -> dict[str, object]:
    def model(name: str, instance: str, window: int = 32_000) -> dict[str, object]:
        return {"name": name, "provider": instance, "upstream_model": f"{name}-upstream",
                "context_window": window, "input_price_per_1k": 0.001,
                "output_price_per_1k": 0.002, "quality": 5}  # fmt: skip

    return {
        "tenants": [
            {"name": "dev", "api_keys_sha256": [hash_api_key(DEV_API_KEY)]},
            *({"name": name, "tier": name, "api_keys_sha256": [hash_api_key(f"{name}-key")]}
              for name in ("tiny", "metered", "single", "recall")),
        ],
        "limits": {
            "tiers": {
                "default": [],
                "tiny": [{"name": "tenant-requests", "kind": "requests", "scope": "tenant",
                          "limit": 2, "window_s": 60}],
                "metered": [{"name": "tenant-tokens", "kind": "tokens", "scope": "tenant",
                             "limit": 300, "window_s": 600}],
                "single": [{"name": "tenant-in-flight", "kind": "concurrency", "scope": "tenant",
                            "limit": 1}],
                "recall": [],
            }
        },
        "cache": {"tenants": {"recall": {"mode": "semantic"}}},
        "models": [
            model("primary", "primary"),
            model("secondary", "secondary"),
            model("small-window", "primary", window=4_000),
            model("large-window", "secondary", window=200_000),
            model("flaky", "flaky"),
            model("impatient", "primary-1s"),
        ],
        "routing": {
            "fallbacks": {"primary": ["secondary"], "small-window": ["large-window"],
                          "impatient": ["secondary"]},
            "retry": {"max_attempts_per_model": 2, "backoff_base_s": 0.01, "backoff_cap_s": 0.05},
            "degraded": {"serve_from_cache": True, "similarity_threshold": 0.5},
            "breaker": {
                "consecutive_failures": consecutive_failures,
                "recovery_timeout_s": 1.0,
                "min_calls": 100,
            },
        },
        "providers": {
            "instances": [
                {"name": name, "backend": "openai", "base_url": fake.base_url,
                 "api_key_env": "FAKE_UPSTREAM_KEY"}
                for name, fake in fakes.items()
            ]
            + [{"name": "primary-1s", "backend": "openai", "base_url": fakes["primary"].base_url,
                "api_key_env": "FAKE_UPSTREAM_KEY", "request_timeout_s": 1.0},
               {"name": "embedder", "backend": "simulated"}],
            "embeddings": {"instance": "embedder"},
        },
    }  # fmt: skip


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeOpenAI]]:
    with (
        serving_in_background(FakeOpenAI()) as primary,
        serving_in_background(FakeOpenAI()) as secondary,
        serving_in_background(FakeOpenAI()) as flaky,
    ):
        yield {"primary": primary, "secondary": secondary, "flaky": flaky}


def _start_mesh(
    fakes: dict[str, FakeOpenAI], directory: pathlib.Path, consecutive_failures: int
) -> contextlib.AbstractContextManager[Mesh]:
    policy_path = directory / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(_policy(fakes, consecutive_failures)))
    env = {
        "LLMMESH_POLICY_FILE": str(policy_path),
        "FAKE_UPSTREAM_KEY": "sk-test-secret",
        "LLMMESH_ROUTER_STALL_TIMEOUT_S": str(STALL_TIMEOUT_S),
    }
    return local_mesh(directory / "services.log", env)


@pytest.fixture(scope="module")
def mesh(fakes: dict[str, FakeOpenAI], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    # Breakers stay closed here, so one test's failures cannot steer the next test's route.
    with _start_mesh(fakes, tmp_path_factory.mktemp("resilience"), 1000) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_fakes(fakes: dict[str, FakeOpenAI]) -> Iterator[None]:
    for fake in fakes.values():
        fake.reset()
    yield
    unused = {name: fake.pending_replies for name, fake in fakes.items() if fake.pending_replies}
    assert not unused, f"scripted upstream replies were never requested: {unused}"


@pytest.fixture
async def router(mesh: Mesh) -> AsyncIterator[router_service_pb2_grpc.RouterServiceStub]:
    async with grpc.aio.insecure_channel(mesh.router_address) as channel:
        yield router_service_pb2_grpc.RouterServiceStub(channel)


def _request(
    model: str, prompt: str | None = None, **fields: object
) -> router_service_pb2.StreamCompleteRequest:
    # A unique prompt per call keeps earlier answers out of the cache.
    text = prompt or f"question {uuid.uuid4().hex}"
    return router_service_pb2.StreamCompleteRequest(
        model=model,
        messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=text)],
        **fields,  # type: ignore[arg-type]
    )


def _expect_rate_limited(error: grpc.aio.AioRpcError) -> None:
    if error_details(error).reason != "RATE_LIMITED":
        raise error


def _key_of(tenant: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {tenant}-key"),)


async def _complete(
    router: router_service_pb2_grpc.RouterServiceStub,
    request: router_service_pb2.StreamCompleteRequest,
    timeout_s: float = 10.0,
    metadata: tuple[tuple[str, str], ...] = AUTH_METADATA,
) -> tuple[str, router_service_pb2.StreamCompleteResponse]:
    events = [e async for e in router.StreamComplete(request, metadata=metadata, timeout=timeout_s)]
    text = "".join(e.delta.text for e in events if e.HasField("delta"))
    return text, events[-1]


async def _failure(
    router: router_service_pb2_grpc.RouterServiceStub,
    request: router_service_pb2.StreamCompleteRequest,
    timeout_s: float = 10.0,
    metadata: tuple[tuple[str, str], ...] = AUTH_METADATA,
) -> tuple[list[str], ErrorDetails]:
    deltas: list[str] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for event in router.StreamComplete(request, metadata=metadata, timeout=timeout_s):
            deltas.append(event.delta.text)
    return deltas, error_details(caught.value)


def _counts(fakes: dict[str, FakeOpenAI]) -> dict[str, int]:
    return {name: fake.request_count for name, fake in fakes.items()}


async def test_server_errors_fall_back_to_the_next_model(
    router: router_service_pb2_grpc.RouterServiceStub, fakes: dict[str, FakeOpenAI]
) -> None:
    before = _counts(fakes)
    fakes["primary"].enqueue(
        http_error(UpstreamProblem.SERVER_ERROR), http_error(UpstreamProblem.BAD_GATEWAY)
    )
    text, last = await _complete(router, _request("primary"))
    assert text
    assert last.summary.model == "secondary"
    assert last.summary.attempts == 3
    after = _counts(fakes)
    assert after["primary"] - before["primary"] == 2
    assert after["secondary"] - before["secondary"] == 1


async def test_rate_limit_with_short_retry_after_is_retried_on_the_same_model_after_waiting(
    router: router_service_pb2_grpc.RouterServiceStub, fakes: dict[str, FakeOpenAI]
) -> None:
    before = _counts(fakes)
    fakes["primary"].enqueue(rate_limited(retry_after_s=0.3))
    started = time.monotonic()
    _, last = await _complete(router, _request("primary"))
    assert time.monotonic() - started >= 0.3
    assert last.summary.model == "primary"
    assert _counts(fakes)["primary"] - before["primary"] == 2


async def test_rate_limit_with_retry_after_beyond_the_deadline_falls_back_at_once(
    router: router_service_pb2_grpc.RouterServiceStub, fakes: dict[str, FakeOpenAI]
) -> None:
    fakes["primary"].enqueue(rate_limited(retry_after_s=30))
    started = time.monotonic()
    _, last = await _complete(router, _request("primary"), timeout_s=5)
    assert time.monotonic() - started < 2
    assert last.summary.model == "secondary"


async def test_context_length_error_moves_to_a_model_with_a_larger_window(
    router: router_service_pb2_grpc.RouterServiceStub, fakes: dict[str, FakeOpenAI]
) -> None:
    fakes["primary"].enqueue(http_error(UpstreamProblem.CONTEXT_LENGTH_EXCEEDED))
    _, last = await _complete(router, _request("small-window"))
    assert last.summary.model == "large-window"
    assert last.summary.attempts == 2


async def test_circuit_opens_then_half_opens_with_a_single_probe(
    fakes: dict[str, FakeOpenAI], tmp_path: pathlib.Path
) -> None:
    with _start_mesh(fakes, tmp_path, consecutive_failures=2) as mesh:
        async with grpc.aio.insecure_channel(mesh.router_address) as channel:
            await _open_then_half_open(router_service_pb2_grpc.RouterServiceStub(channel), fakes)


async def _open_then_half_open(
    router: router_service_pb2_grpc.RouterServiceStub, fakes: dict[str, FakeOpenAI]
) -> None:
    flaky = fakes["flaky"]
    flaky.enqueue(*[http_error(UpstreamProblem.SERVICE_UNAVAILABLE)] * 2)
    _, first = await _failure(router, _request("flaky"))
    assert first.reason == "NO_MODEL_AVAILABLE"
    calls_when_open = flaky.request_count
    started = time.monotonic()
    _, refused = await _failure(router, _request("flaky"))
    assert time.monotonic() - started < 0.5
    assert refused.code == grpc.StatusCode.UNAVAILABLE
    assert flaky.request_count == calls_when_open, "an open circuit must not call upstream"

    await asyncio.sleep(1.1)  # the recovery timeout
    flaky.enqueue(slow_first_token(0.5))
    outcomes = await asyncio.gather(
        *(_complete(router, _request("flaky")) for _ in range(3)), return_exceptions=True
    )
    succeeded = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(succeeded) == 1, outcomes
    assert flaky.request_count == calls_when_open + 1, "half-open lets exactly one probe through"
    _, closed_again = await _complete(router, _request("flaky"))
    assert closed_again.summary.model == "flaky"


async def test_stream_cut_after_tokens_ends_with_an_error_saying_how_much_was_delivered(
    router: router_service_pb2_grpc.RouterServiceStub, fakes: dict[str, FakeOpenAI]
) -> None:
    before = _counts(fakes)
    fakes["primary"].enqueue(cut_stream(after_chunks=2))
    deltas, details = await _failure(router, _request("primary"))
    assert "".join(deltas) == "".join(DEFAULT_ANSWER_CHUNKS[:2])
    assert details.code == grpc.StatusCode.UNAVAILABLE
    assert details.reason == "STREAM_INTERRUPTED"
    assert details.metadata["delivered_deltas"] == str(len(deltas))
    assert details.metadata["delivered_chars"] == str(len("".join(deltas)))
    assert _counts(fakes)["secondary"] == before["secondary"], (
        "no answer spliced from another model"
    )


async def test_fifty_identical_concurrent_requests_make_exactly_one_upstream_call(
    router: router_service_pb2_grpc.RouterServiceStub, fakes: dict[str, FakeOpenAI]
) -> None:
    before = fakes["primary"].request_count
    fakes["primary"].enqueue(slow_first_token(0.5))
    prompt = f"shared question {uuid.uuid4().hex}"
    results = await asyncio.gather(
        *(_complete(router, _request("primary", prompt)) for _ in range(50))
    )
    assert fakes["primary"].request_count - before == 1
    texts = {text for text, _ in results}
    assert len(texts) == 1
    assert texts.pop()


async def test_deadline_is_respected_through_retries(
    router: router_service_pb2_grpc.RouterServiceStub, fakes: dict[str, FakeOpenAI]
) -> None:
    # A retryable failure, then a retry that never answers: the caller's deadline must
    # end it, not the upstream or the retry budget.
    fakes["primary"].enqueue(http_error(UpstreamProblem.SERVER_ERROR), hang())
    started = time.monotonic()
    _, details = await _failure(router, _request("primary"), timeout_s=1.0)
    assert details.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 1.5


async def test_an_upstream_that_hangs_before_its_first_token_fails_over_within_the_deadline(
    router: router_service_pb2_grpc.RouterServiceStub, fakes: dict[str, FakeOpenAI]
) -> None:
    # The instance gives up after 1 s; 4 s of the caller's deadline are left for the fallback.
    fakes["primary"].enqueue(hang())
    started = time.monotonic()
    text, last = await _complete(router, _request("impatient"), timeout_s=5.0)
    elapsed_s = time.monotonic() - started
    assert text
    assert last.summary.model == "secondary"
    assert last.summary.attempts == 2
    assert 1.0 <= elapsed_s < 3.0


async def test_a_caller_that_stops_reading_stops_the_upstream_then_its_stream_ends(
    mesh: Mesh, fakes: dict[str, FakeOpenAI]
) -> None:
    # 30 MB of text; the caller reads one delta and then nothing. Its window is fixed
    # (no bandwidth probing), as a client that may stall sets it.
    long_answer = tuple(f" {index:07d}{'x' * 992}" for index in range(30_000))
    fakes["primary"].enqueue(Reply(chunks=long_answer))
    options = [("grpc.http2.bdp_probe", 0)]
    async with grpc.aio.insecure_channel(mesh.router_address, options=options) as channel:
        router = router_service_pb2_grpc.RouterServiceStub(channel)
        bypass = router_pb2.CacheControl(mode=caching_pb2.CACHE_MODE_BYPASS)
        parameters = chat_pb2.GenerationParameters(max_tokens=len(long_answer))
        call = router.StreamComplete(
            _request("primary", cache=bypass, parameters=parameters),
            metadata=AUTH_METADATA,
            timeout=30,
        )
        assert (await call.read()).HasField("delta")
        upstream = fakes["primary"].last_request
        async with asyncio.timeout(STALL_TIMEOUT_S + 10):
            while not upstream.disconnected:
                await asyncio.sleep(0.1)
        whole_body = len(long_answer) * 1000  # bytes: each chunk's SSE frame is longer
        assert upstream.bytes_sent < whole_body / 4, "the upstream ran on for a stalled caller"
        received: list[str] = []
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while (event := await call.read()) is not grpc.aio.EOF:
                received.append(event.delta.text)
    details = error_details(ended.value)
    assert details.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.reason == "STREAM_STALLED"
    assert len("".join(received)) < len("".join(long_answer)) / 4


async def test_cancel_reaches_the_upstream(
    router: router_service_pb2_grpc.RouterServiceStub, fakes: dict[str, FakeOpenAI]
) -> None:
    fakes["primary"].enqueue(slow_tokens(0.2))
    call = router.StreamComplete(_request("primary"), metadata=AUTH_METADATA, timeout=10)
    first = await call.read()
    assert first.HasField("delta")
    upstream = fakes["primary"].last_request
    call.cancel()
    async with asyncio.timeout(5):
        while not upstream.disconnected:
            await asyncio.sleep(0.05)


async def test_unknown_priority_is_invalid_argument_naming_the_field(
    router: router_service_pb2_grpc.RouterServiceStub,
) -> None:
    _, details = await _failure(router, _request("auto", priority=42))
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details.field_violations] == ["priority"]


async def test_rate_limited_request_gets_resource_exhausted_with_quota_failure_and_retry_info(
    router: router_service_pb2_grpc.RouterServiceStub,
) -> None:
    for _ in range(2):
        await _complete(router, _request("primary"), metadata=_key_of("tiny"))
    _, details = await _failure(router, _request("primary"), metadata=_key_of("tiny"))
    assert details.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.reason == "RATE_LIMITED"
    assert [v.subject for v in details.quota_violations] == ["tenant:tenant-requests"]
    assert details.retry_after_s is not None
    assert 0 < details.retry_after_s <= 60


async def test_settlement_refunds_what_the_estimate_took_beyond_real_usage(
    router: router_service_pb2_grpc.RouterServiceStub,
) -> None:
    # Each request reserves ~215 tokens (prompt + max_tokens) of a 300-token budget but
    # uses ~10: only settlement with the real usage lets the next ones in.
    parameters = chat_pb2.GenerationParameters(max_tokens=200)
    for _ in range(4):
        async with asyncio.timeout(5):
            while True:
                try:
                    await _complete(
                        router, _request("primary", parameters=parameters),
                        metadata=_key_of("metered"),
                    )  # fmt: skip
                    break
                except grpc.aio.AioRpcError as error:
                    # The previous settlement runs just after its answer; give it a moment.
                    _expect_rate_limited(error)
                    await asyncio.sleep(0.05)


async def test_cancelled_request_releases_its_concurrency_slot(
    router: router_service_pb2_grpc.RouterServiceStub, fakes: dict[str, FakeOpenAI]
) -> None:
    fakes["primary"].enqueue(slow_tokens(0.5))
    call = router.StreamComplete(_request("primary"), metadata=_key_of("single"), timeout=10)
    assert (await call.read()).HasField("delta")
    _, refused = await _failure(router, _request("primary"), metadata=_key_of("single"))
    assert refused.reason == "RATE_LIMITED"
    call.cancel()
    async with asyncio.timeout(5):
        while True:
            try:
                await _complete(router, _request("primary"), metadata=_key_of("single"))
                return
            except grpc.aio.AioRpcError as error:
                _expect_rate_limited(error)
                await asyncio.sleep(0.05)


async def test_when_every_model_fails_a_similar_cached_answer_is_served_flagged_degraded(
    router: router_service_pb2_grpc.RouterServiceStub, fakes: dict[str, FakeOpenAI]
) -> None:
    original, _ = await _complete(
        router, _request("flaky", "What is the capital city of France?"), metadata=_key_of("recall")
    )
    await asyncio.sleep(0.3)  # the store runs just after the answer
    fakes["flaky"].enqueue(*[http_error(UpstreamProblem.SERVER_ERROR)] * 2)
    exact_only = router_pb2.CacheControl(mode=caching_pb2.CACHE_MODE_EXACT)
    text, last = await _complete(
        router,
        _request("flaky", "Tell me the capital city of France", cache=exact_only),
        metadata=_key_of("recall"),
    )
    assert text == original
    assert last.summary.degraded
    assert last.summary.cache_status == caching_pb2.CACHE_STATUS_SEMANTIC


async def test_when_every_model_fails_and_nothing_similar_is_cached_the_status_says_so(
    router: router_service_pb2_grpc.RouterServiceStub, fakes: dict[str, FakeOpenAI]
) -> None:
    fakes["flaky"].enqueue(*[http_error(UpstreamProblem.SERVER_ERROR)] * 2)
    _, details = await _failure(router, _request("flaky"), metadata=_key_of("recall"))
    assert details.code == grpc.StatusCode.UNAVAILABLE
    assert details.reason == "NO_MODEL_AVAILABLE"
