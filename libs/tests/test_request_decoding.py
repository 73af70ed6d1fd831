"""Bytes that are not a valid request get INVALID_ARGUMENT MALFORMED_REQUEST, whatever the
kind of RPC, with nothing of the decoder's text; they are logged once per peer per minute."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from llmmesh.router.v1 import router_service_pb2
from llmmesh.runtime.errors import error_details
from llmmesh.runtime.request_decoding import PerKeyThrottle, RequestDecoder, peer_host
from llmmesh.testing.intercepted import intercepted_server

Request = router_service_pb2.StreamCompleteRequest
Response = router_service_pb2.StreamCompleteResponse
# A string field (model, 1) whose two bytes are not UTF-8; a length past the end; a bad tag.
MALFORMED = [b"\x0a\x02\xff\xfe", b"\x12\x7f\x01", b"\xff\xff\xff\xff"]


async def _unary(request: Request, context: object) -> Response:
    return Response()


async def _stream(request: Request, context: object) -> AsyncIterator[Response]:
    yield Response()


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    codecs = {
        "request_deserializer": Request.FromString,
        "response_serializer": Response.SerializeToString,
    }
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary, **codecs),
        "Stream": grpc.unary_stream_rpc_method_handler(_stream, **codecs),
    }

    def add_health_and_reflection(server: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        reflection.enable_server_reflection(["t.T", reflection.SERVICE_NAME], server)

    async with intercepted_server(handlers, add_more=add_health_and_reflection) as client:
        yield client


@pytest.fixture
def fresh_log_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RequestDecoder, "_log_throttle", PerKeyThrottle())


async def _refusal(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if isinstance(call, grpc.aio.UnaryStreamCall | grpc.aio.StreamStreamCall):
            async for _ in call:
                pass
        else:
            await call  # type: ignore[misc]
    return caught.value


def _assert_malformed(error: grpc.aio.AioRpcError) -> None:
    details = error_details(error)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")
    assert "Decode" not in details.message
    assert "UTF-8" not in details.message


@pytest.mark.parametrize("raw", MALFORMED)
async def test_malformed_bytes_are_invalid_argument_for_unary_and_streaming_rpcs(
    channel: grpc.aio.Channel, raw: bytes
) -> None:
    _assert_malformed(await _refusal(channel.unary_unary("/t.T/Unary")(raw)))
    _assert_malformed(await _refusal(channel.unary_stream("/t.T/Stream")(raw)))


async def test_the_message_names_the_expected_type(channel: grpc.aio.Channel) -> None:
    error = await _refusal(channel.unary_unary("/t.T/Unary")(MALFORMED[0]))
    assert "llmmesh.router.v1.StreamCompleteRequest" in error_details(error).message


async def test_health_and_reflection_refuse_malformed_bytes_alike(
    channel: grpc.aio.Channel,
) -> None:
    check = "/grpc.health.v1.Health/Check"
    _assert_malformed(await _refusal(channel.unary_unary(check)(b"\xff\xff")))
    info = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    _assert_malformed(await _refusal(channel.stream_stream(info)(iter([b"\xff\xff"]))))


async def test_well_formed_requests_still_decode(channel: grpc.aio.Channel) -> None:
    unary = channel.unary_unary("/t.T/Unary", response_deserializer=Response.FromString)
    assert await unary(Request(model="auto").SerializeToString()) == Response()
    health_stub = health_pb2_grpc.HealthStub(channel)
    assert (await health_stub.Check(health_pb2.HealthCheckRequest())).status
    reflection_call = channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    [listing] = [response async for response in reflection_call]
    assert {s.name for s in listing.list_services_response.service} >= {"t.T"}


async def test_malformed_requests_are_logged_once_per_peer_per_minute(
    channel: grpc.aio.Channel, fresh_log_throttle: None
) -> None:
    with structlog.testing.capture_logs() as logs:
        for raw in MALFORMED * 3:
            await _refusal(channel.unary_unary("/t.T/Unary")(raw))
    [line] = [line for line in logs if line["event"] == "malformed_request"]
    assert line["peer"] == "127.0.0.1"
    assert line["method"] == "/t.T/Unary"
    assert not any("exc_info" in entry or "exception" in entry for entry in logs)


def test_throttle_lets_one_event_per_key_through_per_interval() -> None:
    now = [0.0]
    throttle = PerKeyThrottle(interval_s=60, clock=lambda: now[0])
    assert throttle.allow("a")
    assert not throttle.allow("a")
    assert throttle.allow("b")
    now[0] = 59.9
    assert not throttle.allow("a")
    now[0] = 60.0
    assert throttle.allow("a")


def test_throttle_remembers_a_bounded_number_of_keys() -> None:
    throttle = PerKeyThrottle(interval_s=60, max_keys=2, clock=lambda: 0.0)
    assert [throttle.allow(key) for key in ("a", "b", "c")] == [True, True, True]
    assert throttle.allow("a")  # forgotten, as the oldest, when "c" came
    assert not throttle.allow("c")


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:10.0.0.7:53120", "10.0.0.7"),
        ("ipv6:[::1]:40000", "::1"),
        ("ipv6:[2001:db8::5]:443", "2001:db8::5"),
        ("unix:/run/llmmesh.sock", "unix:/run/llmmesh.sock"),
    ],
)
def test_peer_host_drops_the_port(peer: str, host: str) -> None:
    assert peer_host(peer) == host
