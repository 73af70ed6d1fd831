"""Rich errors survive a real gRPC hop, in unary and streaming RPCs alike, and stay small
enough for a trailer whatever they hold."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from llmmesh.runtime.errors import (
    ERROR_DOMAIN,
    MAX_FIELD_VIOLATIONS,
    MAX_MESSAGE_WIRE_BYTES,
    OMITTED_FIELD_VIOLATIONS,
    ErrorDetails,
    FieldViolation,
    QuotaViolation,
    RpcFailure,
    cut_text,
    error_details,
    invalid_argument,
)
from llmmesh.testing.intercepted import intercepted_server
from llmmesh.testing.trailers import trailer_wire_bytes

QUOTA_FAILURE = RpcFailure(
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    "slow down",
    reason="RATE_LIMITED",
    metadata={"limit": "tenant-requests"},
    retry_after_s=1.5,
    quota_violations=[QuotaViolation("tenant:a", "60 requests per minute")],
)


async def _unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    raise QUOTA_FAILURE


async def _stream(
    request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    yield b"first"
    raise invalid_argument([FieldViolation("messages[0].role", "unknown role")])


async def _crash(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    raise KeyError("secret internals")


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "Stream": grpc.unary_stream_rpc_method_handler(_stream),
        "Crash": grpc.unary_unary_rpc_method_handler(_crash),
    }
    async with intercepted_server(handlers) as client:
        yield client


async def test_unary_failure_arrives_with_error_info_retry_info_and_quota_failure(
    channel: grpc.aio.Channel,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/t.T/Unary")(b"")
    details = error_details(caught.value)
    assert details.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (details.reason, details.domain) == ("RATE_LIMITED", ERROR_DOMAIN)
    assert details.metadata == {"limit": "tenant-requests"}
    assert details.retry_after_s == pytest.approx(1.5)
    assert details.quota_violations == (QuotaViolation("tenant:a", "60 requests per minute"),)


async def test_streaming_failure_after_a_message_arrives_with_field_violations(
    channel: grpc.aio.Channel,
) -> None:
    call = channel.unary_stream("/t.T/Stream")(b"")
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for message in call:
            received.append(message)
    assert received == [b"first"]
    details = error_details(caught.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.field_violations == (FieldViolation("messages[0].role", "unknown role"),)


async def test_unexpected_exception_becomes_internal_without_its_message(
    channel: grpc.aio.Channel,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/t.T/Crash")(b"")
    details = error_details(caught.value)
    assert details.code == grpc.StatusCode.INTERNAL
    assert details.reason == "INTERNAL"
    assert "secret" not in details.message


def test_error_details_of_a_plain_status_has_no_reason() -> None:
    class PlainError(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.UNAVAILABLE

        def details(self) -> str:
            return "connection refused"

        def trailing_metadata(self) -> tuple[()]:
            return ()

    details = error_details(PlainError())
    assert (details.code, details.reason) == (grpc.StatusCode.UNAVAILABLE, "")
    assert details.message == "connection refused"


# -- bounded size ---------------------------------------------------------------------------

TRAILER_LIMIT_BYTES = 4096
HUGE_NAME = "m" * 20_000


SOURCES = {
    "huge value in the message": lambda: invalid_argument(
        [FieldViolation("model", f"unknown model {HUGE_NAME!r}")]
    ),
    "ten thousand field violations": lambda: invalid_argument(
        [FieldViolation(f"messages[{i}].content", "must not be empty") for i in range(10_000)]
    ),
    "characters that percent-encode": lambda: RpcFailure(
        grpc.StatusCode.INVALID_ARGUMENT, "数据" * 5_000, reason="INVALID_REQUEST"
    ),
    "huge metadata and quota violations": lambda: RpcFailure(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "slow down",
        reason="RATE_LIMITED" * 50,
        metadata={f"key-{i}-{HUGE_NAME}": HUGE_NAME for i in range(100)},
        quota_violations=[QuotaViolation(HUGE_NAME, HUGE_NAME) for _ in range(100)],
        field_violations=[FieldViolation(HUGE_NAME, HUGE_NAME) for _ in range(100)],
    ),
}


@pytest.fixture
async def failing_channel() -> AsyncIterator[tuple[grpc.aio.Channel, list[RpcFailure]]]:
    """A server whose one method raises the failure the test puts in the list."""
    planted: list[RpcFailure] = []

    async def fail(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        raise planted[0]

    handlers = {"Fail": grpc.unary_unary_rpc_method_handler(fail)}
    async with intercepted_server(handlers) as client:
        yield client, planted


@pytest.mark.parametrize("source", SOURCES)
async def test_any_failure_arrives_with_its_own_status_in_a_trailer_under_4_kb(
    failing_channel: tuple[grpc.aio.Channel, list[RpcFailure]], source: str
) -> None:
    channel, planted = failing_channel
    planted.append(SOURCES[source]())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/t.T/Fail")(b"")
    assert caught.value.code() == planted[0].code  # not RESOURCE_EXHAUSTED "Stream removed"
    assert error_details(caught.value).domain == ERROR_DOMAIN
    assert trailer_wire_bytes(caught.value) < TRAILER_LIMIT_BYTES


def test_a_long_message_is_cut_with_an_ellipsis_within_the_bound() -> None:
    failure = invalid_argument([FieldViolation("model", f"unknown model {HUGE_NAME!r}")])
    message = failure.to_status().details
    assert message.startswith("invalid request: model: unknown model 'mmm")
    assert message.endswith("\u2026")
    assert len(message.encode()) <= MAX_MESSAGE_WIRE_BYTES


def test_what_was_left_out_is_counted() -> None:
    violations = [FieldViolation(f"messages[{i}].content", "must not be empty") for i in range(500)]
    status = invalid_argument(violations).to_status()
    details = _decoded(status)
    assert 0 < len(details.field_violations) <= MAX_FIELD_VIOLATIONS
    assert details.field_violations[0] == violations[0]
    omitted = int(details.metadata[OMITTED_FIELD_VIOLATIONS])
    assert omitted + len(details.field_violations) == 500
    assert "; and 495 more" in status.details


def test_values_within_the_bounds_are_unchanged() -> None:
    details = _decoded(QUOTA_FAILURE.to_status())
    assert details.message == "slow down"
    assert details.metadata == {"limit": "tenant-requests"}
    assert details.quota_violations == QUOTA_FAILURE.quota_violations


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("eleven chars", 10, "eleven \u2026"),  # the ellipsis takes three bytes
        ("ééééé", 7, "éé\u2026"),
        ("lone \ud800 surrogate", 100, "lone ? surrogate"),
    ],
)
def test_cut_text_keeps_within_its_byte_limit(text: str, limit: int, expected: str) -> None:
    assert cut_text(text, limit) == expected
    assert len(cut_text(text, limit).encode()) <= limit


def _decoded(status: grpc.Status) -> ErrorDetails:
    class Received(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return status.code

        def details(self) -> str:
            return str(status.details)

        def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
            return tuple(status.trailing_metadata)

    return error_details(Received())
