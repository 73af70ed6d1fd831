"""Nothing of a prompt or an answer reaches a log line, a span, a metric or an error message,
on every path a request can take: success (a miss, an exact hit, a semantic lookup), invalid
input, refused credentials, malformed bytes, a rate limit, upstream errors, a cache that
crashes, and a crash inside a handler of the router and of the provider.

Every string field of every request (found from the proto, so a field added later is
planted too), a text header, a binary header and the fake upstream's answer carry their own
marker. The four services run as processes with a debug log level, export over OTLP to a
real collector, and a test build (tests/e2e/crash_hook) makes a handler fail the way parsing
code does: with the request's text in the exception. After every path has run, every line
each process wrote and every span and metric the collector received are searched.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import uuid
from collections.abc import Iterator

import grpc
import pytest
import yaml
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from llmmesh.common.v1 import caching_pb2, chat_pb2
from llmmesh.mesh import Mesh
from llmmesh.policy import hash_api_key
from llmmesh.router.v1 import router_pb2, router_service_pb2
from llmmesh.runtime.errors import error_details
from llmmesh.testing.background import serving_in_background
from llmmesh.testing.fake_upstreams import FakeOpenAI, UpstreamProblem, http_error, stream_error
from llmmesh.testing.mesh import DEV_API_KEY, local_mesh
from llmmesh.testing.otlp_collector import OtlpCollector
from llmmesh.testing.redis_server import RedisServer

PREFIX = f"leak{uuid.uuid4().hex[:12]}"
ANSWER_MARKER = f"{PREFIX}-answer"
CRASH_HOOK = pathlib.Path(__file__).parent / "crash_hook"
TIGHT_KEY = "tight-tenant-key"
MAX_PROMPT_BYTES = 50_000
STREAM = "/llmmesh.router.v1.RouterService/StreamComplete"
Code = grpc.StatusCode


def planted(path: str, model: str = "primary", extra: str = "") -> Message:
    """A valid request whose every string field holds a marker naming the path and the field."""
    request = router_service_pb2.StreamCompleteRequest()
    _plant(request, f"{PREFIX}-{path}")
    request.model = model
    for message in request.messages:
        message.role = chat_pb2.ROLE_USER
        message.content = f"What dose of {message.content} is safe? {extra}"
    form = request.parameters.response_format
    form.type = chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    form.json_schema = json.dumps({"description": form.json_schema})
    del request.parameters.tools[:]  # the provider refuses tools; the "tools" path plants them
    return request


def _plant(message: Message, prefix: str) -> None:
    for field in message.DESCRIPTOR.fields:
        path = f"{prefix}.{field.name}"
        target = getattr(message, field.name)
        if field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                target.extend([f"{path}.0", f"{path}.1"])
            else:
                setattr(message, field.name, path)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                _plant(target.add(), f"{path}.0")
            else:
                _plant(target, path)


@dataclasses.dataclass
class Outcome:
    code: grpc.StatusCode
    reason: str
    caller_saw: str  # the error message, details and trailers, as text
    answer: str


# path -> (request, metadata beyond the headers every call carries, expected code)
def _paths() -> dict[str, tuple[Message | bytes, tuple[tuple[str, str | bytes], ...], Code]]:
    dev = (("authorization", f"Bearer {DEV_API_KEY}"),)
    tight = (("x-api-key", TIGHT_KEY),)
    tools = planted("tools")
    tools.parameters.tools.add(name=f"{PREFIX}-tools.name", description=f"{PREFIX}-tools.d")
    invalid = planted("invalid-fields")
    invalid.messages.add(role=chat_pb2.ROLE_UNSPECIFIED, content=f"{PREFIX}-invalid-role")
    invalid.parameters.temperature = 7.0
    oversized = planted("oversized")
    oversized.messages[0].content = f"{PREFIX}-oversized " * (MAX_PROMPT_BYTES // 20)
    bypass = router_pb2.CacheControl(mode=caching_pb2.CACHE_MODE_BYPASS)
    upstream_4xx = planted("upstream-4xx", model="fragile")
    upstream_5xx = planted("upstream-5xx", model="fragile")
    cut_mid_answer = planted("upstream-cut", model="fragile")
    for request in (upstream_4xx, upstream_5xx, cut_mid_answer):
        request.cache.CopyFrom(bypass)
    return {
        "success": (planted("success"), dev, Code.OK),
        "exact-hit": (planted("success"), dev, Code.OK),
        "semantic-lookup": (planted("success", extra="please"), dev, Code.OK),
        "unknown-model": (planted("unknown-model", model=f"{PREFIX}-model"), dev,
                          Code.INVALID_ARGUMENT),
        "invalid-fields": (invalid, dev, Code.INVALID_ARGUMENT),
        "oversized": (oversized, dev, Code.INVALID_ARGUMENT),
        "tools-refused-by-provider": (tools, dev, Code.INVALID_ARGUMENT),
        "malformed-bytes": (planted("malformed").SerializeToString() + b"\xff", dev,
                            Code.INVALID_ARGUMENT),
        "unknown-key": (planted("unknown-key"), (("authorization", f"Bearer {PREFIX}-key"),),
                        Code.UNAUTHENTICATED),
        "two-keys": (planted("two-keys"), (*dev, ("x-api-key", f"{PREFIX}-second-key")),
                     Code.UNAUTHENTICATED),
        "admitted": (planted("admitted"), tight, Code.OK),
        "rate-limited": (planted("rate-limited"), tight, Code.RESOURCE_EXHAUSTED),
        "upstream-4xx": (upstream_4xx, dev, Code.INVALID_ARGUMENT),
        "upstream-5xx": (upstream_5xx, dev, Code.UNAVAILABLE),
        "upstream-cut-mid-answer": (cut_mid_answer, dev, Code.UNAVAILABLE),
        "cache-crash": (planted("cache-crash", extra="crash-in:cache"), dev, Code.OK),
        "router-crash": (planted("router-crash", extra="crash-in:router"), dev, Code.INTERNAL),
        # The router takes the provider's INTERNAL as that model failing: all models failed.
        "provider-crash": (planted("provider-crash", model="fragile", extra="crash-in:provider"),
                           dev, Code.UNAVAILABLE),
    }  # fmt: skip


# What the fragile model's upstream answers, path by path. It is an upstream of its own, so
# no embedding call of the cache (which goes to the other) can take a scripted reply.
UPSTREAM_SCRIPT = {
    "upstream-4xx": [http_error(UpstreamProblem.BAD_REQUEST)],
    "upstream-5xx": [http_error(UpstreamProblem.SERVER_ERROR)] * 2,
    "upstream-cut-mid-answer": [stream_error(UpstreamProblem.SERVER_ERROR, after_chunks=2)],
}


def _policy(upstream: FakeOpenAI, fragile: FakeOpenAI) -> dict[str, object]:
    def model(name: str) -> dict[str, object]:
        return {"name": name, "provider": name, "upstream_model": f"{name}-upstream"}

    return {
        "tenants": [
            {"name": "dev", "api_keys_sha256": [hash_api_key(DEV_API_KEY)]},
            {"name": "tight", "tier": "tight", "api_keys_sha256": [hash_api_key(TIGHT_KEY)]},
        ],
        "limits": {"tiers": {"default": [], "tight": [
            {"name": "tenant-requests", "kind": "requests", "scope": "tenant", "limit": 1,
             "window_s": 600}]}},
        "cache": {"defaults": {"mode": "semantic", "embedder": "provider"}},
        "models": [model("primary"), model("fragile")],
        "routing": {"retry": {"max_attempts_per_model": 2, "backoff_base_s": 0.01}},
        "providers": {"instances": [
            {"name": "primary", "backend": "openai", "base_url": upstream.base_url,
             "api_key_env": "FAKE_UPSTREAM_KEY", "embedding_models": ["embed-model"]},
            {"name": "fragile", "backend": "openai", "base_url": fragile.base_url,
             "api_key_env": "FAKE_UPSTREAM_KEY"}]},
    }  # fmt: skip


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(answer_chunks=("The safe dose is ", ANSWER_MARKER, " per day."))
    with serving_in_background(fake):
        yield fake


@pytest.fixture(scope="module")
def fragile() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(answer_chunks=("The fragile dose is ", ANSWER_MARKER, " per day."))
    with serving_in_background(fake):
        yield fake


@pytest.fixture(scope="module")
def mesh(
    upstream: FakeOpenAI, fragile: FakeOpenAI, collector: OtlpCollector, log_path: pathlib.Path
) -> Iterator[Mesh]:
    redis = RedisServer()
    redis.start()
    policy_path = log_path.parent / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(_policy(upstream, fragile)))
    python_path = os.pathsep.join(p for p in (str(CRASH_HOOK), os.environ.get("PYTHONPATH")) if p)
    env = {
        "PYTHONPATH": python_path,
        "LLMMESH_POLICY_FILE": str(policy_path),
        "LLMMESH_REDIS_URL": redis.url,
        "LLMMESH_LOG_LEVEL": "debug",
        "LLMMESH_ROUTER_MAX_PROMPT_BYTES": str(MAX_PROMPT_BYTES),
        "LLMMESH_CACHE_EMBEDDER": "provider",
        "LLMMESH_CACHE_PROVIDER_EMBED_INSTANCE": "primary",
        "LLMMESH_CACHE_PROVIDER_EMBED_MODEL": "embed-model",
        "FAKE_UPSTREAM_KEY": "sk-leak-test-key",
        **collector.exporter_env(),
    }
    try:
        with local_mesh(log_path, env) as running:
            yield running
    finally:
        redis.close()


def _call(
    channel: grpc.Channel, request: Message | bytes, metadata: tuple[tuple[str, str | bytes], ...]
) -> Outcome:
    raw = request if isinstance(request, bytes) else request.SerializeToString()
    headers = (*metadata, ("x-client-note", f"{PREFIX}-header"), ("x-blob-bin", PREFIX.encode()))
    call = channel.unary_stream(STREAM)(raw, metadata=headers, timeout=30)
    answer = []
    try:
        for event in call:
            answer.append(router_service_pb2.StreamCompleteResponse.FromString(event).delta.text)
    except grpc.RpcError as error:
        details = error_details(error)
        trailers = repr(error.trailing_metadata())  # type: ignore[attr-defined]
        return Outcome(details.code, details.reason, f"{details!r} {trailers}", "".join(answer))
    return Outcome(Code.OK, "", repr(call.trailing_metadata()), "".join(answer))


@pytest.fixture(scope="module")
def outcomes(mesh: Mesh, fragile: FakeOpenAI, collector: OtlpCollector) -> dict[str, Outcome]:
    results = {}
    with grpc.insecure_channel(mesh.router_address) as channel:
        for path, (request, metadata, _) in _paths().items():
            fragile.enqueue(*UPSTREAM_SCRIPT.get(path, []))
            results[path] = _call(channel, request, metadata)
    # Every request's server span is exported once it ends; wait for the last batch.
    collector.wait_for(
        lambda spans: sum(s.name == STREAM.lstrip("/") for s in spans) >= len(results)
    )
    return results


@pytest.mark.parametrize("path", list(_paths()))
def test_each_path_ends_as_expected_and_its_error_quotes_nothing_of_the_request(
    outcomes: dict[str, Outcome], path: str
) -> None:
    outcome = outcomes[path]
    assert outcome.code == _paths()[path][2], outcome
    assert PREFIX not in outcome.caller_saw


def test_the_markers_went_all_the_way_to_the_upstream_and_back(
    outcomes: dict[str, Outcome], upstream: FakeOpenAI
) -> None:
    assert ANSWER_MARKER in outcomes["success"].answer
    assert ANSWER_MARKER in outcomes["exact-hit"].answer
    assert ANSWER_MARKER in outcomes["cache-crash"].answer
    sent = json.dumps([request.body for request in upstream.requests])
    for field in ("messages.0.content", "messages.0.name", "parameters.stop.1"):
        assert f"{PREFIX}-success.{field}" in sent


def test_the_crashes_happened_and_were_logged_by_type(
    outcomes: dict[str, Outcome], log_path: pathlib.Path
) -> None:
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line[:1] == "{"]
    crashes = [line for line in lines if line["message"] == "unhandled_error"]
    assert {line["service"] for line in crashes} >= {"router", "cache", "provider"}
    assert all(line["exception"][0]["exc_type"] == "ValueError" for line in crashes)
    assert [line["peer"] for line in lines if line["message"] == "malformed_request"]


def test_no_marker_in_any_log_line_of_any_service(
    outcomes: dict[str, Outcome], log_path: pathlib.Path
) -> None:
    logs = log_path.read_text()
    leaked = sorted({line for line in logs.splitlines() if PREFIX in line})
    assert not leaked, "\n".join(leaked[:5])
    assert "sk-leak-test-key" not in logs
    assert DEV_API_KEY not in logs
    assert TIGHT_KEY not in logs


def test_no_marker_in_any_exported_span_or_metric(
    outcomes: dict[str, Outcome], collector: OtlpCollector
) -> None:
    exported = collector.exported_bytes()
    assert b"exception.stacktrace" in exported  # the crashes are on their spans
    assert PREFIX.encode() not in exported
    assert DEV_API_KEY.encode() not in exported
