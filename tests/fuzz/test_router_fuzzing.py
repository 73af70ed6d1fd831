"""Property-based fuzzing of the front door: a real router process with its real peers gets
requests drawn from the proto, random metadata (credentials, duplicates, binary headers) and
raw bytes. Whatever arrives, the answer is OK, INVALID_ARGUMENT, UNAUTHENTICATED,
RESOURCE_EXHAUSTED (a limit) or DEADLINE_EXCEEDED, never INTERNAL or UNKNOWN, and its trailer
stays under 4 KB. Derandomized (a fixed seed per test, no example database), so CI runs the
same cases every time; the status table of a run is in docs/security.md.

    python -m pytest -q -s tests/fuzz    # prints the status table
"""

from __future__ import annotations

import collections
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from llmmesh.cache.v1 import cache_service_pb2
from llmmesh.common.v1 import chat_pb2
from llmmesh.mesh import Mesh
from llmmesh.policy import hash_api_key
from llmmesh.provider.v1 import provider_service_pb2
from llmmesh.ratelimit.v1 import ratelimit_service_pb2
from llmmesh.router.v1 import router_service_pb2
from llmmesh.runtime.errors import error_details
from llmmesh.runtime.request_decoding import MALFORMED_REQUESTS_METRIC
from llmmesh.testing.mesh import DEV_API_KEY, local_mesh, peer_channel_credentials
from llmmesh.testing.otlp_collector import OtlpCollector
from llmmesh.testing.trailers import trailer_wire_bytes

from .proto_strategies import messages, texts

ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
TRAILER_LIMIT_BYTES = 4096
TIGHT_KEY = "fuzz-tight-key"
MODELS = ["auto", "sim-fast", "sim-large"]
METHODS = {
    "StreamComplete": ("/llmmesh.router.v1.RouterService/StreamComplete", True),
    "Complete": ("/llmmesh.router.v1.RouterService/Complete", False),
    "ListModels": ("/llmmesh.router.v1.RouterService/ListModels", False),
}
CALL_TIMEOUT_S = 10.0
# Cases per property: 2,100 drawn, plus the explicit examples. Most are refused at
# validation within milliseconds.
REQUEST_CASES = 1100
METADATA_CASES = 400
RAW_BYTES_CASES = 600
FUZZ_SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# (property, status, reason) -> cases, for the table.
TALLY: collections.Counter[tuple[str, str, str]] = collections.Counter()


def _policy() -> dict[str, Any]:
    return {
        "tenants": [
            {"name": "dev", "api_keys_sha256": [hash_api_key(DEV_API_KEY)]},
            {"name": "tight", "tier": "tight", "api_keys_sha256": [hash_api_key(TIGHT_KEY)]},
        ],
        "limits": {"tiers": {
            "default": [{"name": "tenant-in-flight", "kind": "concurrency", "scope": "tenant",
                         "limit": 64}],
            "tight": [{"name": "tenant-requests", "kind": "requests", "scope": "tenant",
                       "limit": 3, "window_s": 600}],
        }},
        "models": [
            {"name": "sim-fast", "provider": "simulated", "upstream_model": "sim-fast",
             "context_window": 16_384},
            {"name": "sim-large", "provider": "simulated", "upstream_model": "sim-large",
             "context_window": 128_000},
        ],
        "providers": {"instances": [
            {"name": "simulated", "backend": "simulated", "answer_tokens": 8}]},
    }  # fmt: skip


@pytest.fixture(scope="module")
def mesh(
    collector: OtlpCollector, log_path: pathlib.Path, request: pytest.FixtureRequest
) -> Iterator[Mesh]:
    policy_path = log_path.parent / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(_policy()))
    env = {
        "LLMMESH_POLICY_FILE": str(policy_path),
        "LLMMESH_ROUTER_MAX_PROMPT_BYTES": "100000",
        "LLMMESH_CACHE_EMBEDDER": "simulated",
        **collector.exporter_env(),
        "OTEL_TRACES_SAMPLER": "always_off",  # only the metrics matter here
    }
    with local_mesh(log_path, env) as running:
        yield running
    _print_table(request)


@pytest.fixture(scope="module")
def channel(mesh: Mesh) -> Iterator[grpc.Channel]:
    # The client may send more than the router accepts, to see that refused too.
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    with grpc.insecure_channel(mesh.router_address, options) as client:
        yield client


def _observe(prop: str, channel: grpc.Channel, method: str, raw: bytes, metadata: Any) -> None:
    path, streaming = METHODS[method]
    if streaming:
        call = channel.unary_stream(path)(raw, metadata=metadata, timeout=CALL_TIMEOUT_S)
        try:
            for _ in call:
                pass
            outcome: Any = call
        except grpc.RpcError as error:
            outcome = error
    else:
        try:
            _, outcome = channel.unary_unary(path).with_call(
                raw, metadata=metadata, timeout=CALL_TIMEOUT_S
            )
        except grpc.RpcError as error:
            outcome = error
    code = outcome.code()
    reason = error_details(outcome).reason if code != grpc.StatusCode.OK else ""
    TALLY[prop, code.name, reason] += 1
    assert code in ALLOWED, (code, outcome.details())
    assert trailer_wire_bytes(outcome) < TRAILER_LIMIT_BYTES


# -- requests drawn from the proto -----------------------------------------------------------

AUTH = (("authorization", f"Bearer {DEV_API_KEY}"),)
USER = chat_pb2.ROLE_USER


def _repaired(request: router_service_pb2.StreamCompleteRequest) -> Any:
    """The request with what validation checks put right, every other text left as drawn,
    so that random names, stop sequences and schemas travel through the whole mesh."""
    request.model = MODELS[len(request.model) % len(MODELS)]
    if not request.messages:
        request.messages.add()
    for message in request.messages:
        message.role = chat_pb2.ROLE_USER + abs(message.role) % 2  # user or assistant
        if not message.content.strip():
            message.content = "hello"
    request.messages[-1].role = USER
    parameters = request.parameters
    parameters.ClearField("temperature")
    parameters.ClearField("top_p")
    parameters.max_tokens = abs(parameters.max_tokens) % 64
    parameters.stop[:] = [stop for stop in parameters.stop if stop][:4]
    del parameters.tools[:]  # the provider refuses tools until it supports them
    parameters.response_format.type = chat_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT
    request.priority = abs(request.priority) % 5
    request.cache.ClearField("similarity_threshold")
    return request


# Half as drawn (nearly always refused), half put right enough to be served.
_DRAWN = messages(router_service_pb2.StreamCompleteRequest.DESCRIPTOR, known=MODELS)
REQUESTS = _DRAWN | _DRAWN.map(_repaired)


def _probe(**fields: Any) -> router_service_pb2.StreamCompleteRequest:
    return router_service_pb2.StreamCompleteRequest(**fields)


@settings(FUZZ_SETTINGS, max_examples=REQUEST_CASES)
@given(request=REQUESTS, method=st.sampled_from(["StreamComplete", "Complete"]))
# The probes that found the first holes: a 20 KB model name, 10,000 empty messages, and
# megabytes outside `content`.
@example(request=_probe(model="m" * 20_000), method="StreamComplete")
@example(request=_probe(model="auto", messages=[chat_pb2.ChatMessage()] * 10_000),
         method="StreamComplete")  # fmt: skip
@example(
    request=_probe(
        model="sim-fast",
        messages=[chat_pb2.ChatMessage(role=USER, content="hi", name="n" * 3_000_000)],
    ),
    method="Complete",
)
@example(
    request=_probe(
        model="sim-fast",
        messages=[chat_pb2.ChatMessage(role=USER, content="hi")],
        parameters=chat_pb2.GenerationParameters(stop=["s" * 3_000_000]),
    ),
    method="Complete",
)
@example(request=_probe(model="sim-fast", messages=[chat_pb2.ChatMessage(role=USER, content="hi")],
         parameters=chat_pb2.GenerationParameters(response_format=chat_pb2.ResponseFormat(
             json_schema="{" + " " * 3_000_000 + "}"))), method="Complete")  # fmt: skip
@example(request=_probe(model="sim-fast", messages=[chat_pb2.ChatMessage(role=USER, content="hi")]),
         method="StreamComplete")  # fmt: skip
def test_any_request_gets_an_allowed_status_and_a_small_trailer(
    channel: grpc.Channel, request: Any, method: str
) -> None:
    _observe("request", channel, method, request.SerializeToString(), AUTH)


# -- metadata: credentials, duplicates, binary headers -----------------------------------------

_RESERVED = ("grpc-", ":", "te", "host", "content-type", "user-agent", "connection")
HEADER_NAMES = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,24}", fullmatch=True).filter(
    lambda name: not name.startswith(_RESERVED)
)
PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)
CREDENTIALS = st.one_of(
    st.tuples(st.just("authorization"), st.sampled_from([
        f"Bearer {DEV_API_KEY}", f"bearer {TIGHT_KEY}", "Bearer ", "Basic a2V5", "Bearer x"])),
    st.tuples(st.just("authorization"), PRINTABLE),
    st.tuples(st.just("x-api-key"), st.sampled_from([DEV_API_KEY, TIGHT_KEY, "", " "])),
    st.tuples(st.just("x-api-key"), PRINTABLE),
)  # fmt: skip
OTHER_HEADERS = st.one_of(
    st.tuples(HEADER_NAMES.map(lambda name: name + "-bin"), st.binary(max_size=300)),
    st.tuples(st.sampled_from(["authorization-bin", "x-api-key-bin"]), st.binary(max_size=64)),
    st.tuples(st.sampled_from(["traceparent", "tracestate", "baggage"]), PRINTABLE),
    st.tuples(HEADER_NAMES.filter(lambda name: not name.endswith("-bin")), PRINTABLE),
)
# Credentials (none, one, several) among other headers, in any order.
VALID_CREDENTIAL = [("authorization", f"Bearer {DEV_API_KEY}")]
METADATA = st.tuples(
    st.lists(CREDENTIALS, max_size=2) | st.just(VALID_CREDENTIAL),
    st.lists(OTHER_HEADERS, max_size=6),
).flatmap(lambda parts: st.permutations(parts[0] + parts[1]))


@settings(FUZZ_SETTINGS, max_examples=METADATA_CASES)
@given(
    metadata=METADATA,
    method=st.sampled_from(list(METHODS)),
    content=texts(),
)
@example(metadata=[("trace-bin", b"\xff\xfe"), ("authorization", f"Bearer {DEV_API_KEY}")],
         method="StreamComplete", content="hi")  # fmt: skip
@example(metadata=[("authorization", f"Bearer {DEV_API_KEY}"), ("x-api-key", TIGHT_KEY)],
         method="Complete", content="hi")  # fmt: skip
def test_any_metadata_gets_an_allowed_status_and_a_small_trailer(
    channel: grpc.Channel, metadata: list[tuple[str, str | bytes]], method: str, content: str
) -> None:
    request = _probe(model="sim-fast", messages=[chat_pb2.ChatMessage(role=USER, content=content)])
    _observe("metadata", channel, method, request.SerializeToString(), tuple(metadata))


# -- raw bytes as a request ------------------------------------------------------------------


def _mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """A valid request cut short, or with bytes overwritten."""
    cut = st.integers(0, len(valid)).map(lambda n: valid[:n])
    edits = st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255))
    overwritten = st.lists(edits, min_size=1, max_size=6).map(lambda e: _apply(valid, e))
    return cut | overwritten


def _apply(valid: bytes, edits: list[tuple[int, int]]) -> bytes:
    data = bytearray(valid)
    for position, byte in edits:
        data[position] = byte
    return bytes(data)


RICH_REQUEST = _probe(
    model="sim-fast",
    messages=[chat_pb2.ChatMessage(role=USER, content="what is the dose?", name="ana")],
    parameters=chat_pb2.GenerationParameters(temperature=0.5, stop=["END"], max_tokens=5),
).SerializeToString()


@settings(FUZZ_SETTINGS, max_examples=RAW_BYTES_CASES)
@given(
    raw=st.binary(max_size=2_000) | _mutations(RICH_REQUEST), method=st.sampled_from(list(METHODS))
)
@example(raw=b"\x0a\x02\xff\xfe", method="StreamComplete")  # a string that is not UTF-8
@example(raw=b"\x12\xff\xff\xff\xff\x0f", method="Complete")  # a length past the end
@example(raw=b"\x0a" * 200 + b"\x00", method="StreamComplete")
@example(raw=b"\x12\x00" * 20_000, method="StreamComplete")  # 20,000 empty messages, raw
@example(raw=b"\x00" * (17 * 1024 * 1024), method="Complete")  # over the 16 MB message limit
def test_any_bytes_get_an_allowed_status_and_a_small_trailer(
    channel: grpc.Channel, raw: bytes, method: str
) -> None:
    _observe("raw bytes", channel, method, raw, AUTH)


def test_millions_of_empty_messages_are_refused_before_any_deadline(channel: grpc.Channel) -> None:
    """Checked element by element, 2 million messages once took the router 30 s and 1 GB."""
    raw = b"\x12\x00" * ((4 * 1024 * 1024 - 64) // 2)  # just under the router's message limit
    with pytest.raises(grpc.RpcError) as caught:
        list(channel.unary_stream(METHODS["StreamComplete"][0])(raw, metadata=AUTH, timeout=10))
    details = error_details(caught.value)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert [v.field for v in details.field_violations] == ["messages"]


INTERNAL_SERVICES = {
    "ratelimiter": ratelimit_service_pb2.DESCRIPTOR.services_by_name["RateLimitService"],
    "cache": cache_service_pb2.DESCRIPTOR.services_by_name["CacheService"],
    "provider": provider_service_pb2.DESCRIPTOR.services_by_name["ProviderService"],
}


@pytest.mark.parametrize("service", list(INTERNAL_SERVICES))
def test_every_rpc_of_the_internal_services_refuses_malformed_bytes_alike(
    mesh: Mesh, service: str
) -> None:
    # Called as the router, the one peer every internal service admits: the bytes, not
    # the caller, are what is refused.
    router_identity = peer_channel_credentials(mesh, "router")
    with grpc.secure_channel(mesh.processes[service].address, router_identity) as internal:
        for method in INTERNAL_SERVICES[service].methods:
            path = f"/{method.containing_service.full_name}/{method.name}"
            call = internal.unary_stream if method.server_streaming else internal.unary_unary
            with pytest.raises(grpc.RpcError) as caught:
                # A field whose length runs past the end: malformed for any message type.
                result = call(path)(b"\x12\x7f\x01", timeout=CALL_TIMEOUT_S)
                list(result) if method.server_streaming else None
            details = error_details(caught.value)
            assert (details.code, details.reason) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "MALFORMED_REQUEST",
            ), path


def test_malformed_requests_were_counted_and_logged_once_per_peer_per_minute(
    channel: grpc.Channel, collector: OtlpCollector, log_path: pathlib.Path
) -> None:
    malformed = sum(n for (_, _, reason), n in TALLY.items() if reason == "MALFORMED_REQUEST")
    if not malformed:
        pytest.skip("run with the fuzzing tests before it")

    def counted(_spans: object) -> bool:
        points = [p for name, _, p in collector.metric_points if name == MALFORMED_REQUESTS_METRIC]
        # Cumulative sums, one series per method: the latest point of each, added up.
        latest: dict[str, float] = {}
        for name, attributes, point in collector.metric_points:
            if name == MALFORMED_REQUESTS_METRIC:
                latest[json.dumps(attributes, sort_keys=True)] = point.as_int
        return bool(points) and sum(latest.values()) >= malformed

    collector.wait_for(counted, timeout_s=10)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line[:1] == "{"]
    logged = [
        line
        for line in lines
        if line["message"] == "malformed_request" and line["service"] == "router"
    ]
    minutes = 1 + len({line["timestamp"][:16] for line in logged})
    assert 1 <= len(logged) <= minutes, logged
    assert not [line for line in lines if line["level"] in ("error", "critical")]


def _print_table(request: pytest.FixtureRequest) -> None:
    if not TALLY:
        return
    rows = ["| property | status | reason | cases |", "| --- | --- | --- | ---: |"]
    rows += [
        f"| {prop} | {code} | {reason or '-'} | {count} |"
        for (prop, code, reason), count in sorted(TALLY.items())
    ]
    rows.append(f"| all | | | {sum(TALLY.values())} |")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("\n" + "\n".join(rows))
