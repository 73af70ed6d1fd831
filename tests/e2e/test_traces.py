"""One streamed request is one connected trace across the four services, Redis and the
upstream HTTP call, exported over real OTLP to a real collector; logs carry its ids and no
prompt text reaches spans or logs."""

from __future__ import annotations

import json
import pathlib
import secrets
import urllib.request
import uuid
from collections.abc import Iterator

import grpc
import pytest
import yaml

from llmmesh.common.v1 import chat_pb2
from llmmesh.mesh import Mesh
from llmmesh.policy import hash_api_key
from llmmesh.router.v1 import router_service_pb2, router_service_pb2_grpc
from llmmesh.testing.background import serving_in_background
from llmmesh.testing.fake_upstreams import FakeOpenAI, UpstreamProblem, http_error
from llmmesh.testing.mesh import AUTH_METADATA, DEV_API_KEY, local_mesh
from llmmesh.testing.otlp_collector import OtlpCollector
from llmmesh.testing.ports import free_port
from llmmesh.testing.redis_server import RedisServer
from llmmesh.traceview import SpanRecord, render_tree

ROUTER = "llmmesh-router"
STREAM = "llmmesh.router.v1.RouterService/StreamComplete"
RESERVE = "llmmesh.ratelimit.v1.RateLimitService/Reserve"
LOOKUP = "llmmesh.cache.v1.CacheService/Lookup"
GENERATE = "llmmesh.provider.v1.ProviderService/Generate"
PROVIDER = "llmmesh-provider"
CHAT = "chat primary-upstream"
PROMETHEUS_PORT = free_port()

# (service, kind, name) of a parent span -> (service, kind, name) of its child.
EDGES = [
    ((ROUTER, "SERVER", STREAM), (ROUTER, "CLIENT", RESERVE)),
    ((ROUTER, "CLIENT", RESERVE), ("llmmesh-ratelimiter", "SERVER", RESERVE)),
    (("llmmesh-ratelimiter", "SERVER", RESERVE), ("llmmesh-ratelimiter", "CLIENT", "EVALSHA")),
    ((ROUTER, "SERVER", STREAM), (ROUTER, "CLIENT", LOOKUP)),
    ((ROUTER, "CLIENT", LOOKUP), ("llmmesh-cache", "SERVER", LOOKUP)),
    (("llmmesh-cache", "SERVER", LOOKUP), ("llmmesh-cache", "CLIENT", "*redis*")),
    ((ROUTER, "SERVER", STREAM), (ROUTER, "INTERNAL", CHAT)),
    ((ROUTER, "INTERNAL", CHAT), (ROUTER, "CLIENT", GENERATE)),
    ((ROUTER, "CLIENT", GENERATE), (PROVIDER, "SERVER", GENERATE)),
    ((PROVIDER, "SERVER", GENERATE), (PROVIDER, "CLIENT", CHAT)),
    ((PROVIDER, "CLIENT", CHAT), (PROVIDER, "CLIENT", "POST")),
]  # fmt: skip


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with serving_in_background(FakeOpenAI()) as fake:
        yield fake


@pytest.fixture(scope="module")
def mesh(upstream: FakeOpenAI, collector: OtlpCollector, log_path: pathlib.Path) -> Iterator[Mesh]:
    redis = RedisServer()
    redis.start()
    policy = {
        "tenants": [{"name": "dev", "api_keys_sha256": [hash_api_key(DEV_API_KEY)]}],
        "models": [
            {"name": "primary", "provider": "upstream", "upstream_model": "primary-upstream"},
            {"name": "backup", "provider": "upstream", "upstream_model": "backup-upstream"},
        ],
        "routing": {
            "fallbacks": {"primary": ["backup"]},
            "retry": {"max_attempts_per_model": 2, "backoff_base_s": 0.01},
        },
        "providers": {
            "instances": [
                {"name": "upstream", "backend": "openai", "base_url": upstream.base_url,
                 "api_key_env": "FAKE_UPSTREAM_KEY"}
            ]
        },
    }  # fmt: skip
    policy_path = log_path.parent / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(policy))
    env = {
        "LLMMESH_POLICY_FILE": str(policy_path),
        "LLMMESH_REDIS_URL": redis.url,
        "FAKE_UPSTREAM_KEY": "sk-trace-test-key",
        **collector.exporter_env(),
        "LLMMESH_ROUTER_PROMETHEUS_PORT": str(PROMETHEUS_PORT),
    }
    try:
        with local_mesh(log_path, env) as running:
            yield running
    finally:
        redis.close()


def _traced_request(mesh: Mesh, model: str, prompt: str) -> str:
    """Streams one request under a trace the test chose; returns the trace id."""
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    request = router_service_pb2.StreamCompleteRequest(
        model=model, messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=prompt)]
    )
    with grpc.insecure_channel(mesh.router_address) as channel:
        events = list(
            router_service_pb2_grpc.RouterServiceStub(channel).StreamComplete(
                request, metadata=(*AUTH_METADATA, ("traceparent", traceparent)), timeout=10
            )
        )
    assert events[-1].HasField("summary")
    return trace_id


def _find(spans: list[SpanRecord], service: str, kind: str, name: str) -> list[SpanRecord]:
    def matches(span: SpanRecord) -> bool:
        if name == "*redis*":
            return (
                span.attributes.get("db.system") == "redis"
                or span.attributes.get("db.system.name") == "redis"
            )
        return span.name == name

    return [s for s in spans if s.service == service and s.kind == kind and matches(s)]


@pytest.fixture(scope="module")
def prompt_marker() -> str:
    return f"confidential-prompt-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def streamed_trace(mesh: Mesh, collector: OtlpCollector, prompt_marker: str) -> list[SpanRecord]:
    trace_id = _traced_request(mesh, "primary", f"Tell me about {prompt_marker} please")

    def complete(spans: list[SpanRecord]) -> bool:
        mine = [s for s in spans if s.trace_id == trace_id]
        return all(_find(mine, *child) for _, child in EDGES)

    collector.wait_for(complete)
    return collector.trace(trace_id)


@pytest.mark.parametrize(("parent", "child"), EDGES, ids=[f"{p[2]}->{c[2]}" for p, c in EDGES])
def test_trace_has_edge(
    streamed_trace: list[SpanRecord],
    parent: tuple[str, str, str],
    child: tuple[str, str, str],
) -> None:
    parents = {s.span_id for s in _find(streamed_trace, *parent)}
    children = _find(streamed_trace, *child)
    assert parents, f"no {parent} span in the trace"
    assert any(c.parent_span_id in parents for c in children), render_tree(streamed_trace)


def test_whole_trace_is_connected_under_the_callers_span(
    streamed_trace: list[SpanRecord], collector: OtlpCollector
) -> None:
    trace_id = streamed_trace[0].trace_id

    def orphans(spans: list[SpanRecord]) -> list[tuple[str, str]]:
        mine = [s for s in spans if s.trace_id == trace_id]
        ids = {s.span_id for s in mine}
        return [(s.service, s.name) for s in mine if s.parent_span_id not in ids]

    # Spans arrive in batches per process; a parent may land a moment after its child.
    # Only the router's server span hangs from the caller's own (unexported) span.
    collector.wait_for(lambda spans: orphans(spans) == [(ROUTER, STREAM)], timeout_s=5)


@pytest.mark.parametrize("service", [ROUTER, PROVIDER])
def test_model_call_spans_carry_the_genai_attributes(
    streamed_trace: list[SpanRecord], service: str
) -> None:
    [span] = [s for s in streamed_trace if s.service == service and s.name.startswith("chat ")]
    attributes = span.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"]
    assert attributes["gen_ai.request.model"] == "primary-upstream"
    assert attributes["gen_ai.response.model"]
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["gen_ai.response.time_to_first_chunk"] > 0


def test_router_span_carries_the_route_cache_and_rate_limit_decisions(
    streamed_trace: list[SpanRecord],
) -> None:
    [server] = _find(streamed_trace, ROUTER, "SERVER", STREAM)
    assert server.attributes["llmmesh.route.chain"] == ["primary", "backup"]
    assert server.attributes["llmmesh.ratelimit.decision"] == "allow"
    assert server.attributes["llmmesh.cache.status"] == "miss"
    assert server.attributes["llmmesh.attempts"] == 1
    assert server.attributes["llmmesh.cost_usd"] >= 0


def test_no_prompt_text_or_key_in_any_span_or_log_line(
    streamed_trace: list[SpanRecord],
    collector: OtlpCollector,
    log_path: pathlib.Path,
    prompt_marker: str,
) -> None:
    recorded = repr([(s.name, dict(s.attributes), s.events) for s in collector.spans])
    logs = log_path.read_text()
    for secret in (prompt_marker, "sk-trace-test-key", DEV_API_KEY):
        assert secret not in recorded
        assert secret not in logs


def test_log_lines_carry_the_exported_trace_and_span_ids(
    streamed_trace: list[SpanRecord], log_path: pathlib.Path
) -> None:
    trace_id = streamed_trace[0].trace_id
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if trace_id in line]
    assert {line["service"] for line in lines} >= {"router"}
    span_ids = {s.span_id for s in streamed_trace}
    for line in lines:
        assert line["trace_id"] == trace_id
        assert line["span_id"] in span_ids


def test_failover_shows_every_attempt_in_the_trace(
    mesh: Mesh, collector: OtlpCollector, upstream: FakeOpenAI
) -> None:
    upstream.enqueue(*[http_error(UpstreamProblem.SERVER_ERROR)] * 2)
    trace_id = _traced_request(mesh, "primary", "fail over, please")

    def attempts(spans: list[SpanRecord]) -> list[SpanRecord]:
        return [
            s for s in spans
            if s.trace_id == trace_id and s.service == ROUTER and s.name.startswith("chat ")
        ]  # fmt: skip

    def finished(spans: list[SpanRecord]) -> bool:
        # The server span ends last, after the attempts it holds.
        mine = [s for s in spans if s.trace_id == trace_id]
        return len(attempts(spans)) == 3 and bool(_find(mine, ROUTER, "SERVER", STREAM))

    collector.wait_for(finished)
    names = sorted(s.name for s in attempts(collector.spans))
    assert names == ["chat backup-upstream", "chat primary-upstream", "chat primary-upstream"]
    assert sum(s.error for s in attempts(collector.spans)) == 2
    [server] = _find(collector.trace(trace_id), ROUTER, "SERVER", STREAM)
    assert "llmmesh.retry" in server.events
    assert "llmmesh.fallback" in server.events


def test_genai_and_gateway_metrics_are_exported(
    streamed_trace: list[SpanRecord], collector: OtlpCollector
) -> None:
    wanted = {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.time_to_first_chunk",
        "llmmesh.cost",
        "llmmesh.cache.lookups",
        "llmmesh.streams.in_flight",
    }
    collector.wait_for(lambda _spans: wanted <= collector.metric_names)


def test_router_serves_its_metrics_for_prometheus_to_scrape(
    streamed_trace: list[SpanRecord],
) -> None:
    url = f"http://127.0.0.1:{PROMETHEUS_PORT}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        exposition = response.read().decode()
    assert "gen_ai_client_operation_duration_seconds_count" in exposition
    assert "llmmesh_cost" in exposition
