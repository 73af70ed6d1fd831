"""Whose failure it was decides whether the upstream's circuit hears of it: a provider
process that crashed is not the upstream's fault, an upstream that hangs is, and a
caller's own short deadline is nobody's."""

from __future__ import annotations

import grpc
import pytest

from llmmesh.runtime.errors import RpcFailure
from llmmesh_router.attempts import FailureKind, classify_failure
from llmmesh_router.deadline import Deadline
from llmmesh_router.peers import peer_failure


def _failure(code: grpc.StatusCode, reason: str) -> RpcFailure:
    return RpcFailure(code, "failed", reason=reason)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
        (grpc.StatusCode.CANCELLED, "PROVIDER_CANCELLED"),
        (grpc.StatusCode.INTERNAL, "PROVIDER_INTERNAL"),
        (grpc.StatusCode.UNKNOWN, "PROVIDER_UNKNOWN"),
    ],
)
def test_a_provider_process_that_answered_no_status_of_its_own_is_a_replica_failure(
    code: grpc.StatusCode, reason: str
) -> None:
    assert classify_failure(_failure(code, reason), Deadline.after(5)) is (
        FailureKind.PROVIDER_REPLICA
    )


def test_a_provider_that_cannot_be_reached_is_named_as_the_replica_reasons_expect() -> None:
    class Unreachable(grpc.aio.AioRpcError):
        def __init__(self) -> None:
            super().__init__(
                grpc.StatusCode.UNAVAILABLE,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details="failed to connect to all addresses",
            )

    failure = peer_failure("provider", Unreachable())
    assert classify_failure(failure, Deadline.after(5)) is FailureKind.PROVIDER_REPLICA


def test_an_upstream_timeout_with_time_left_is_the_upstreams_and_counts() -> None:
    timeout = _failure(grpc.StatusCode.DEADLINE_EXCEEDED, "UPSTREAM_TIMEOUT")
    assert classify_failure(timeout, Deadline.after(4)) is FailureKind.UPSTREAM_TIMEOUT


def test_an_upstream_timeout_at_the_end_of_the_callers_deadline_is_the_callers() -> None:
    timeout = _failure(grpc.StatusCode.DEADLINE_EXCEEDED, "UPSTREAM_TIMEOUT")
    assert classify_failure(timeout, Deadline.after(0.05)) is FailureKind.CALLER_DEADLINE
    expired = _failure(grpc.StatusCode.DEADLINE_EXCEEDED, "PROVIDER_DEADLINE_EXCEEDED")
    assert classify_failure(expired, Deadline.after(4)) is FailureKind.CALLER_DEADLINE


@pytest.mark.parametrize(
    ("code", "reason", "kind"),
    [
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "UPSTREAM_RATE_LIMITED", FailureKind.COUNTED),
        (grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE", FailureKind.COUNTED),
        (grpc.StatusCode.UNAVAILABLE, "UPSTREAM_STREAM_CUT", FailureKind.COUNTED),
        (grpc.StatusCode.INVALID_ARGUMENT, "UPSTREAM_BAD_REQUEST", FailureKind.CALLER),
    ],
)
def test_upstream_failures_count_and_bad_requests_do_not(
    code: grpc.StatusCode, reason: str, kind: FailureKind
) -> None:
    assert classify_failure(_failure(code, reason), Deadline.after(5)) is kind
