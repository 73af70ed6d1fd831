"""gRPC errors in the google.rpc richer error model (AIP-193), built and read back.

Every error the mesh returns carries an ErrorInfo with a machine-readable reason in the
"llmmesh.dev" domain, plus RetryInfo, QuotaFailure or BadRequest where they apply, so a
client in any language can act on it without parsing the message.

A status travels in the trailers, and gRPC refuses trailers past its metadata limit (the
caller then sees RESOURCE_EXHAUSTED "Stream removed" instead of the error). So whatever a
request holds, a status stays under 4 KB on the wire: the message, every detail and the
number of field violations are bounded, long values cut with an ellipsis, and what was
left out is counted in the ErrorInfo metadata.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

import grpc
import grpc.aio
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "llmmesh.dev"

# The status message goes out twice: percent-encoded in grpc-message, and inside the
# serialized google.rpc.Status of grpc-status-details-bin (base64, 4/3 of its size). With
# these bounds both together stay near 3.5 KB, under the 4 KB every hop may assume.
MAX_MESSAGE_WIRE_BYTES = 1024
MAX_STATUS_BYTES = 1800
MAX_FIELD_VIOLATIONS = 20
MAX_QUOTA_VIOLATIONS = 10
MAX_METADATA_ENTRIES = 16
MAX_NAME_BYTES = 128  # reasons, field paths, quota subjects, metadata keys
MAX_DESCRIPTION_BYTES = 256  # descriptions and metadata values
# How many violations the message of invalid_argument() spells out; details hold the rest.
SUMMARY_VIOLATIONS = 5
OMITTED_FIELD_VIOLATIONS = "omitted_field_violations"
OMITTED_QUOTA_VIOLATIONS = "omitted_quota_violations"
ELLIPSIS = "\u2026"


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
        """The rich status, bounded in size whatever the failure holds."""
        return rpc_status.to_status(_bounded_status(self))


def _bounded_status(failure: RpcFailure) -> status_pb2.Status:
    message = cut_text(failure.message, MAX_MESSAGE_WIRE_BYTES, cost=_wire_cost)
    metadata = {
        cut_text(key, MAX_NAME_BYTES): cut_text(value, MAX_DESCRIPTION_BYTES)
        for key, value in itertools.islice(failure.metadata.items(), MAX_METADATA_ENTRIES)
    }
    fields = [
        FieldViolation(
            cut_text(v.field, MAX_NAME_BYTES), cut_text(v.description, MAX_DESCRIPTION_BYTES)
        )
        for v in failure.field_violations[:MAX_FIELD_VIOLATIONS]
    ]
    quotas = [
        QuotaViolation(
            cut_text(v.subject, MAX_NAME_BYTES), cut_text(v.description, MAX_DESCRIPTION_BYTES)
        )
        for v in failure.quota_violations[:MAX_QUOTA_VIOLATIONS]
    ]
    while True:
        status = _status(failure, message, metadata, fields, quotas)
        # Each value is bounded already; together they may still be too many. Field
        # violations go first (the message names the first few), then quota violations,
        # then metadata; the message and reason alone always fit.
        if status.ByteSize() <= MAX_STATUS_BYTES:
            return status
        if fields:
            fields.pop()
        elif quotas:
            quotas.pop()
        elif metadata:
            metadata.popitem()
        else:
            return status


def _status(
    failure: RpcFailure,
    message: str,
    metadata: dict[str, str],
    fields: list[FieldViolation],
    quotas: list[QuotaViolation],
) -> status_pb2.Status:
    info = error_details_pb2.ErrorInfo(
        reason=cut_text(failure.reason, MAX_NAME_BYTES), domain=ERROR_DOMAIN, metadata=metadata
    )
    for key, total, kept in (
        (OMITTED_FIELD_VIOLATIONS, len(failure.field_violations), len(fields)),
        (OMITTED_QUOTA_VIOLATIONS, len(failure.quota_violations), len(quotas)),
    ):
        if total > kept:
            info.metadata[key] = str(total - kept)
    details: list[Message] = [info]
    if failure.retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(max(failure.retry_after_s, 0.0) * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    if fields:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in fields
                ]
            )
        )
    if quotas:
        details.append(
            error_details_pb2.QuotaFailure(
                violations=[
                    error_details_pb2.QuotaFailure.Violation(
                        subject=v.subject, description=v.description
                    )
                    for v in quotas
                ]
            )
        )
    packed = []
    for detail in details:
        wrapper = any_pb2.Any()
        wrapper.Pack(detail)
        packed.append(wrapper)
    return status_pb2.Status(
        code=getattr(code_pb2, failure.code.name), message=message, details=packed
    )


def _utf8_cost(char: str) -> int:
    return len(char.encode("utf-8", "replace"))


def _wire_cost(char: str) -> int:
    """Bytes of `char` in grpc-message, which percent-encodes all but printable ASCII."""
    return sum(
        1 if 0x20 <= byte <= 0x7E and byte != 0x25 else 3
        for byte in char.encode("utf-8", "replace")
    )


def cut_text(text: str, limit: int, cost: Callable[[str], int] = _utf8_cost) -> str:
    """`text` if it costs at most `limit`, else its head and an ellipsis within `limit`.

    Reads no further than the limit, so a 10 MB value costs as little as a short one.
    Characters that cannot be encoded (lone surrogates) become "?".
    """
    room = limit - cost(ELLIPSIS)
    spent = 0
    keep = 0
    for index, char in enumerate(text):
        spent += cost(char)
        if spent > limit:
            return _encodable(text[:keep]) + ELLIPSIS
        if spent <= room:
            keep = index + 1
    return _encodable(text)


def _encodable(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


def invalid_argument(violations: Sequence[FieldViolation]) -> RpcFailure:
    """INVALID_ARGUMENT naming every bad field (the message spells out the first few)."""
    summary = "; ".join(f"{v.field}: {v.description}" for v in violations[:SUMMARY_VIOLATIONS])
    if len(violations) > SUMMARY_VIOLATIONS:
        summary += f"; and {len(violations) - SUMMARY_VIOLATIONS} more"
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
