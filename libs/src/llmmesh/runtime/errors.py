"""gRPC errors in the google.rpc richer error model (AIP-193), built and read back.

Every error the mesh returns carries an ErrorInfo with a machine-readable reason in the
"llmmesh.dev" domain, plus RetryInfo, QuotaFailure or BadRequest where they apply, so a
client in any language can act on it without parsing the message.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import NoReturn

import grpc
import grpc.aio
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "llmmesh.dev"


@dataclasses.dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request, named by its path (for example `messages[0].role`)."""

    field: str
    description: str


@dataclasses.dataclass(frozen=True)
class QuotaViolation:
    """One limit a request exceeded."""

    subject: str
    description: str


class RpcFailure(Exception):
    """An error to return to the caller as a rich gRPC status.

    Handlers raise it; the server interceptor (or `abort`) turns it into the status.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str,
        metadata: Mapping[str, str] | None = None,
        retry_after_s: float | None = None,
        field_violations: Sequence[FieldViolation] = (),
        quota_violations: Sequence[QuotaViolation] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.retry_after_s = retry_after_s
        self.field_violations = tuple(field_violations)
        self.quota_violations = tuple(quota_violations)

    def to_status(self) -> grpc.Status:
        details = [
            error_details_pb2.ErrorInfo(
                reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata
            )
        ]
        if self.retry_after_s is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(int(max(self.retry_after_s, 0.0) * 1e9))
            details.append(error_details_pb2.RetryInfo(retry_delay=delay))
        if self.field_violations:
            details.append(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in self.field_violations
                    ]
                )
            )
        if self.quota_violations:
            details.append(
                error_details_pb2.QuotaFailure(
                    violations=[
                        error_details_pb2.QuotaFailure.Violation(
                            subject=v.subject, description=v.description
                        )
                        for v in self.quota_violations
                    ]
                )
            )
        packed = []
        for detail in details:
            wrapper = any_pb2.Any()
            wrapper.Pack(detail)
            packed.append(wrapper)
        status = status_pb2.Status(
            code=getattr(code_pb2, self.code.name), message=self.message, details=packed
        )
        return rpc_status.to_status(status)


def invalid_argument(violations: Sequence[FieldViolation]) -> RpcFailure:
    """INVALID_ARGUMENT naming every bad field."""
    summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return RpcFailure(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"invalid request: {summary}",
        reason="INVALID_REQUEST",
        field_violations=violations,
    )


async def abort(context: grpc.aio.ServicerContext[object, object], failure: RpcFailure) -> NoReturn:
    """Ends the RPC with the failure's rich status.

    When the call has ended already (the caller cancelled or its deadline passed, which can
    happen while the handler decides), nobody is left to tell: the handler ends as cancelled
    instead of failing a second time on an ended call.
    """
    if not context.done():
        try:
            await context.abort_with_status(failure.to_status())
        except grpc.aio.AbortError:
            raise
        except Exception:  # grpc's error for a call that ended while it was being aborted
            if not context.done():
                raise
    raise asyncio.CancelledError


@dataclasses.dataclass(frozen=True)
class ErrorDetails:
    """The rich details of a received error, decoded."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    retry_after_s: float | None = None
    field_violations: tuple[FieldViolation, ...] = ()
    quota_violations: tuple[QuotaViolation, ...] = ()

    def to_failure(self) -> RpcFailure:
        """The same error, to pass on to this service's caller."""
        return RpcFailure(
            self.code,
            self.message,
            reason=self.reason or self.code.name,
            metadata=self.metadata,
            retry_after_s=self.retry_after_s,
            field_violations=self.field_violations,
            quota_violations=self.quota_violations,
        )


def error_details(error: grpc.RpcError) -> ErrorDetails:
    """Decodes the google.rpc details that a peer attached to an error."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    result = ErrorDetails(code=code, message=message or "")
    status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
    if status is None:
        return result
    fields: dict[str, object] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            fields.update(reason=info.reason, domain=info.domain, metadata=dict(info.metadata))
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            fields["retry_after_s"] = retry.retry_delay.ToNanoseconds() / 1e9
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields["field_violations"] = tuple(
                FieldViolation(v.field, v.description) for v in bad.field_violations
            )
        elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
            fields["quota_violations"] = tuple(
                QuotaViolation(v.subject, v.description) for v in quota.violations
            )
    return dataclasses.replace(result, **fields)  # type: ignore[arg-type]
