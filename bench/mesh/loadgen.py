"""The load generator: N concurrent workers call one target for a fixed time and time each call.

It runs as its own process (`python -m bench.mesh.loadgen '<json spec>'`, printing one JSON
result line) so that its CPU use is separate from the services' and can be reported. Every
target is called the way a lean client would call it: generated gRPC stubs on one grpc.aio
channel, or, for the upstream itself, raw httpx streaming with one `json.loads` per SSE frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import pathlib
import resource
import sys
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import grpc.aio
import httpx
import uvloop

from bench.mesh.stats import Distribution, RunResult
from llmmesh.cache.v1 import cache_pb2, cache_service_pb2, cache_service_pb2_grpc
from llmmesh.common.v1 import caching_pb2, chat_pb2
from llmmesh.provider.v1 import provider_service_pb2, provider_service_pb2_grpc
from llmmesh.ratelimit.v1 import ratelimit_pb2, ratelimit_service_pb2, ratelimit_service_pb2_grpc
from llmmesh.router.v1 import router_pb2, router_service_pb2, router_service_pb2_grpc
from llmmesh.runtime.mesh_token import MeshToken, token_interceptors

TARGETS = (
    "router-stream", "router-unary", "provider", "upstream-http", "ratelimiter", "cache-lookup",
)  # fmt: skip
CALL_TIMEOUT_S = 30.0
# The router's default when a request leaves max_tokens at 0; direct calls send it too, so
# every path asks the upstream for the same thing.
MAX_TOKENS = 512
CACHE_MODES = {"bypass": caching_pb2.CACHE_MODE_BYPASS, "exact": caching_pb2.CACHE_MODE_EXACT}
KEPT_ERROR_SAMPLES = 5


@dataclasses.dataclass(frozen=True)
class LoadSpec:
    """One run: which target, how hard and for how long."""

    target: str
    address: str
    concurrency: int
    duration_s: float
    warmup_s: float
    # Catalog model (router), upstream model (provider, upstream), or ratelimit/cache model.
    model: str
    # The provider instance, for the provider target.
    instance: str = ""
    api_key: str = ""
    tenant: str = ""
    # "unique": a fresh prompt per call (a cache miss); "fixed": the same prompt every time.
    prompt: str = "unique"
    cache_mode: str = "exact"
    # Mesh credentials for calling an internal service directly, as the router does:
    # its certificate files (mTLS), or the mesh token.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""
    mesh_token: str = ""

    def to_argument(self) -> str:
        return json.dumps(dataclasses.asdict(self))


@dataclasses.dataclass
class Timings:
    """Seconds since the call started at which each text delta arrived, and when it ended."""

    delta_arrivals_s: list[float]
    total_s: float


Call = Callable[[str], Awaitable[Timings]]


def _messages(prompt: str) -> list[chat_pb2.ChatMessage]:
    return [chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=prompt)]


RouterClient = tuple[
    router_service_pb2_grpc.RouterServiceStub, tuple[tuple[str, str]], router_pb2.CacheControl
]


def _router_client(spec: LoadSpec, channel: grpc.aio.Channel) -> RouterClient:
    """The router stub, the caller's key as metadata, and the run's cache control."""
    return (
        router_service_pb2_grpc.RouterServiceStub(channel),
        (("authorization", f"Bearer {spec.api_key}"),),
        router_pb2.CacheControl(mode=CACHE_MODES[spec.cache_mode]),
    )


def _router_stream(spec: LoadSpec, channel: grpc.aio.Channel) -> Call:
    stub, metadata, cache = _router_client(spec, channel)

    async def call(prompt: str) -> Timings:
        request = router_service_pb2.StreamCompleteRequest(
            model=spec.model, messages=_messages(prompt), cache=cache
        )
        started = time.perf_counter()
        arrivals: list[float] = []
        summary_seen = False
        async for event in stub.StreamComplete(request, metadata=metadata, timeout=CALL_TIMEOUT_S):
            if event.HasField("delta"):
                arrivals.append(time.perf_counter() - started)
            else:
                summary_seen = True
        if not summary_seen:
            raise RuntimeError("stream ended without a summary")
        return Timings(arrivals, time.perf_counter() - started)

    return call


def _router_unary(spec: LoadSpec, channel: grpc.aio.Channel) -> Call:
    stub, metadata, cache = _router_client(spec, channel)

    async def call(prompt: str) -> Timings:
        request = router_service_pb2.CompleteRequest(
            model=spec.model, messages=_messages(prompt), cache=cache
        )
        started = time.perf_counter()
        response = await stub.Complete(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
        if not response.text:
            raise RuntimeError("empty answer")
        total_s = time.perf_counter() - started
        # A unary answer arrives whole: its first token is its last.
        return Timings([total_s], total_s)

    return call


def _provider(spec: LoadSpec, channel: grpc.aio.Channel) -> Call:
    stub = provider_service_pb2_grpc.ProviderServiceStub(channel)
    parameters = chat_pb2.GenerationParameters(max_tokens=MAX_TOKENS)

    async def call(prompt: str) -> Timings:
        request = provider_service_pb2.GenerateRequest(
            instance=spec.instance, model=spec.model, messages=_messages(prompt),
            parameters=parameters,
        )  # fmt: skip
        started = time.perf_counter()
        arrivals: list[float] = []
        async for event in stub.Generate(request, timeout=CALL_TIMEOUT_S):
            if event.HasField("delta"):
                arrivals.append(time.perf_counter() - started)
        return Timings(arrivals, time.perf_counter() - started)

    return call


def _ratelimiter(spec: LoadSpec, channel: grpc.aio.Channel) -> Call:
    """Reserve (the hop on the first token's path), then Settle (after the answer)."""
    stub = ratelimit_service_pb2_grpc.RateLimitServiceStub(channel)
    request_ids = itertools.count()

    async def call(prompt: str) -> Timings:
        started = time.perf_counter()
        reserved = await stub.Reserve(
            ratelimit_service_pb2.ReserveRequest(
                tenant=spec.tenant, model=spec.model, estimated_tokens=MAX_TOKENS + 16,
                request_id=f"bench-{next(request_ids)}",
            ),
            timeout=CALL_TIMEOUT_S,
        )  # fmt: skip
        reserve_s = time.perf_counter() - started
        if reserved.decision != ratelimit_pb2.DECISION_ALLOW:
            raise RuntimeError(f"denied by {reserved.denied_limit}")
        await stub.Settle(
            ratelimit_service_pb2.SettleRequest(
                reservation_id=reserved.reservation_id, actual_tokens=32
            ),
            timeout=CALL_TIMEOUT_S,
        )
        return Timings([reserve_s], time.perf_counter() - started)

    return call


def _cache_lookup(spec: LoadSpec, channel: grpc.aio.Channel) -> Call:
    stub = cache_service_pb2_grpc.CacheServiceStub(channel)
    parameters = chat_pb2.GenerationParameters(max_tokens=MAX_TOKENS)

    async def call(prompt: str) -> Timings:
        request = cache_service_pb2.LookupRequest(
            scope=cache_pb2.CacheScope(
                tenant=spec.tenant, model=spec.model, messages=_messages(prompt),
                parameters=parameters,
            ),
            mode=CACHE_MODES[spec.cache_mode],
        )  # fmt: skip
        started = time.perf_counter()
        await stub.Lookup(request, timeout=CALL_TIMEOUT_S)
        total_s = time.perf_counter() - started
        return Timings([total_s], total_s)

    return call


def _upstream_http(spec: LoadSpec, idle_clients: list[httpx.AsyncClient]) -> Call:
    """The OpenAI chat-completions stream, read frame by frame as an SDK would.

    Each call borrows a client of its own, one kept-alive connection each: one pool shared
    by 64 workers spends most of the generator's CPU scanning its connections (httpcore's
    pool is linear in them), which would understate the direct throughput.
    """
    url = f"{spec.address}/chat/completions"
    headers = {"authorization": f"Bearer {spec.api_key}"}

    async def call(prompt: str) -> Timings:
        client = idle_clients.pop()
        try:
            return await _stream_once(client, prompt)
        finally:
            idle_clients.append(client)

    async def _stream_once(client: httpx.AsyncClient, prompt: str) -> Timings:
        body = {
            "model": spec.model,
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_completion_tokens": MAX_TOKENS,
        }
        started = time.perf_counter()
        arrivals: list[float] = []
        finished = False
        async with client.stream("POST", url, json=body, headers=headers) as response:
            response.raise_for_status()
            # Read to the end (past [DONE]) so the connection goes back to the pool.
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                payload = line[6:]
                chunk = json.loads(payload)
                for choice in chunk["choices"]:
                    if choice["delta"].get("content"):
                        arrivals.append(time.perf_counter() - started)
                    if choice.get("finish_reason"):
                        finished = True
        if not finished:
            raise RuntimeError("stream ended without a finish reason")
        return Timings(arrivals, time.perf_counter() - started)

    return call


@dataclasses.dataclass
class Samples:
    first_token_ms: array[float] = dataclasses.field(default_factory=lambda: array("d"))
    total_ms: array[float] = dataclasses.field(default_factory=lambda: array("d"))
    inter_token_ms: array[float] = dataclasses.field(default_factory=lambda: array("d"))
    deltas: int = 0
    completed: int = 0
    errors: int = 0
    error_samples: list[str] = dataclasses.field(default_factory=list)

    def add(self, timings: Timings) -> None:
        arrivals = timings.delta_arrivals_s
        if arrivals:
            self.first_token_ms.append(arrivals[0] * 1000)
            self.inter_token_ms.extend(
                (later - earlier) * 1000 for earlier, later in itertools.pairwise(arrivals)
            )
        self.total_ms.append(timings.total_s * 1000)
        self.deltas += len(arrivals)
        self.completed += 1

    def failed(self, error: BaseException) -> None:
        self.errors += 1
        if len(self.error_samples) < KEPT_ERROR_SAMPLES:
            detail = error.details() if isinstance(error, grpc.aio.AioRpcError) else str(error)
            self.error_samples.append(f"{type(error).__name__}: {detail}"[:300])


async def _drive(spec: LoadSpec, call: Call) -> RunResult:
    """Warm up, then measure the calls that end inside the measured window.

    Counting calls by when they end (not when they start) keeps throughput right when one
    call lasts a good part of the window.
    """
    samples = Samples()
    window_start = time.perf_counter() + spec.warmup_s
    window_end = window_start + spec.duration_s
    run_id = f"{time.time_ns():x}"
    # CPU seconds of this process at the window's start and end.
    cpu_marks: dict[str, float] = {}

    async def worker(worker_id: int) -> None:
        for sequence in itertools.count():
            if time.perf_counter() >= window_end:
                return
            prompt = (
                "Why do gateways stream tokens?"
                if spec.prompt == "fixed"
                else f"Request {run_id}-{worker_id}-{sequence}: why do gateways stream tokens?"
            )
            try:
                timings = await call(prompt)
            except (grpc.aio.AioRpcError, httpx.HTTPError, RuntimeError) as error:
                if window_start <= time.perf_counter() <= window_end:
                    samples.failed(error)
                continue
            if window_start <= time.perf_counter() <= window_end:
                samples.add(timings)

    async def mark_cpu() -> None:
        await asyncio.sleep(window_start - time.perf_counter())
        cpu_marks["start"] = _cpu_s()
        await asyncio.sleep(window_end - time.perf_counter())
        cpu_marks["end"] = _cpu_s()

    await asyncio.gather(mark_cpu(), *(worker(i) for i in range(spec.concurrency)))
    return RunResult(
        target=spec.target,
        concurrency=spec.concurrency,
        duration_s=spec.duration_s,
        completed=samples.completed,
        errors=samples.errors,
        first_token=Distribution.of(samples.first_token_ms),
        total=Distribution.of(samples.total_ms),
        inter_token=Distribution.of(samples.inter_token_ms),
        deltas_per_request=samples.deltas / samples.completed if samples.completed else 0.0,
        load_generator_cpu_s=cpu_marks["end"] - cpu_marks["start"],
        error_samples=tuple(samples.error_samples),
    )


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.asynccontextmanager
async def _opened_call(spec: LoadSpec) -> AsyncIterator[Call]:
    """The target's call, over a client opened for the run and closed after it."""
    if spec.target == "upstream-http":
        async with contextlib.AsyncExitStack() as clients:
            limits = httpx.Limits(max_connections=1)
            idle = [
                await clients.enter_async_context(
                    httpx.AsyncClient(timeout=CALL_TIMEOUT_S, limits=limits)
                )
                for _ in range(spec.concurrency)
            ]
            yield _upstream_http(spec, idle)
        return
    builders = {
        "router-stream": _router_stream,
        "router-unary": _router_unary,
        "provider": _provider,
        "ratelimiter": _ratelimiter,
        "cache-lookup": _cache_lookup,
    }
    async with _channel(spec) as channel:
        await channel.channel_ready()
        yield builders[spec.target](spec, channel)


def _channel(spec: LoadSpec) -> grpc.aio.Channel:
    """Plain text, or the router's mesh credentials for a direct call to a peer."""
    interceptors = (
        token_interceptors(MeshToken.from_value(spec.mesh_token)) if spec.mesh_token else None
    )
    if not spec.tls_ca_file:
        return grpc.aio.insecure_channel(spec.address, interceptors=interceptors)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pathlib.Path(spec.tls_ca_file).read_bytes(),
        private_key=pathlib.Path(spec.tls_key_file).read_bytes(),
        certificate_chain=pathlib.Path(spec.tls_cert_file).read_bytes(),
    )
    return grpc.aio.secure_channel(spec.address, credentials, interceptors=interceptors)


async def run(spec: LoadSpec) -> RunResult:
    async with _opened_call(spec) as call:
        return await _drive(spec, call)


def main() -> None:
    spec = LoadSpec(**json.loads(sys.argv[1]))
    if spec.target not in TARGETS:
        raise SystemExit(f"unknown target {spec.target!r}; known: {', '.join(TARGETS)}")
    result: RunResult = uvloop.run(run(spec))
    print(json.dumps(result.to_json()), flush=True)


if __name__ == "__main__":
    main()
