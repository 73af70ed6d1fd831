"""Maps upstream failures (HTTP statuses, provider error codes, transport errors) to RpcFailures.

Every failure carries ErrorInfo metadata naming the instance, backend and model, so the router
can decide to retry, fall back or give up without parsing messages. Messages never carry the
instance's API key: 401/403 messages are written here, and any upstream text is redacted.
"""

from __future__ import annotations

import dataclasses
import email.utils
import time
from collections.abc import Mapping

import grpc

from llmmesh.runtime.errors import RpcFailure

# How much of an upstream error message is kept, so a huge body cannot bloat a status.
MAX_UPSTREAM_MESSAGE_CHARS = 300
# Advice for a 429 that came without retry-after headers.
DEFAULT_RATE_LIMIT_RETRY_S = 1.0

_CONTEXT_LENGTH_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_CONTEXT_LENGTH_PHRASES = (
    "maximum context length",
    "prompt is too long",
    "context window",
    "exceeds the context length",
    "context length exceeded",
)
_CONTENT_FILTER_CODES = frozenset({"content_filter", "content_policy_violation"})
_CONTENT_FILTER_PHRASES = ("content management policy", "content filtering policy")
# How upstreams say that a model lacks a feature (as opposed to a malformed request)...
_UNSUPPORTED_CODES = frozenset({"unsupported_parameter", "unsupported_value"})
_UNSUPPORTED_PHRASES = (
    "not supported",
    "does not support",
    "unsupported",
    "only supported by certain models",
)
# ...and which catalog capability the feature belongs to, by words in the message or param.
_CAPABILITY_WORDS = (
    ("tools", ("tool", "function")),
    ("vision", ("image",)),
    ("json_schema", ("json_schema", "response_format", "output_format", "output_config", "schema")),
    ("reasoning", ("reasoning", "thinking", "think")),
)

# Anthropic names the error in the body; an in-stream `error` event has no HTTP status.
_STATUS_FOR_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "server_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


@dataclasses.dataclass(frozen=True)
class UpstreamTarget:
    """Where a request went: names that go into every error's metadata."""

    instance: str
    backend: str
    model: str

    def metadata(self, **extra: str | int) -> dict[str, str]:
        values = {"instance": self.instance, "backend": self.backend, "model": self.model}
        values.update({key: str(value) for key, value in extra.items()})
        return values


@dataclasses.dataclass(frozen=True)
class UpstreamHttpError:
    """What an upstream said when it refused a request, read from whichever SDK raised it."""

    status: int
    headers: Mapping[str, str]
    code: str | None = None
    error_type: str | None = None
    message: str = ""
    # The request field the upstream blamed, where it names one (OpenAI does).
    param: str | None = None


def redact(text: str, secret: str | None) -> str:
    """The text without the secret, shortened to what an error message may hold."""
    if secret:
        text = text.replace(secret, "[redacted]")
    if len(text) > MAX_UPSTREAM_MESSAGE_CHARS:
        text = text[:MAX_UPSTREAM_MESSAGE_CHARS] + "..."
    return text


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The upstream's advice from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    if (millis := lowered.get("retry-after-ms")) is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    if (value := lowered.get("retry-after")) is not None:
        try:
            return max(float(value), 0.0)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(when.timestamp() - time.time(), 0.0)
    return None


def effective_status(status: int, error_type: str | None) -> int:
    """The HTTP status, or the one the error type implies when the error came in-stream."""
    if status >= 400:
        return status
    return _STATUS_FOR_ERROR_TYPE.get(error_type or "", 500)


def failure_from_http(
    target: UpstreamTarget, error: UpstreamHttpError, *, secret: str | None
) -> RpcFailure:
    """The gRPC failure for an upstream HTTP error (or an in-stream error event)."""
    status = effective_status(error.status, error.error_type)
    upstream_text = redact(error.message, secret)
    meta = target.metadata(upstream_status=status)
    if status == 429:
        advised = retry_after_s(error.headers)
        return RpcFailure(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{target.instance} rate-limited the request",
            reason="UPSTREAM_RATE_LIMITED",
            metadata=meta,
            retry_after_s=DEFAULT_RATE_LIMIT_RETRY_S if advised is None else advised,
        )
    if status in (401, 403):
        # The gateway's own credential was refused: the caller is not at fault and cannot fix
        # it, so neither UNAUTHENTICATED nor PERMISSION_DENIED (they blame the caller) fits.
        # FAILED_PRECONDITION says "the system is not in a state to serve this" until an
        # operator fixes the key; the router may fall back to another instance.
        return RpcFailure(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"{target.instance} rejected the gateway's credentials (HTTP {status})",
            reason="UPSTREAM_CREDENTIALS_REJECTED",
            metadata=meta,
        )
    if status == 529 or error.error_type == "overloaded_error":
        return RpcFailure(
            grpc.StatusCode.UNAVAILABLE,
            f"{target.instance} is overloaded",
            reason="UPSTREAM_OVERLOADED",
            metadata=meta,
            retry_after_s=retry_after_s(error.headers) or 0.0,
        )
    if status >= 500 or status == 408:
        return RpcFailure(
            grpc.StatusCode.UNAVAILABLE,
            f"{target.instance} failed with HTTP {status}: {upstream_text}",
            reason="UPSTREAM_UNAVAILABLE",
            metadata=meta,
            retry_after_s=retry_after_s(error.headers) or 0.0,
        )
    if status == 404:
        return RpcFailure(
            grpc.StatusCode.NOT_FOUND,
            f"{target.instance} does not serve model {target.model}: {upstream_text}",
            reason="UPSTREAM_MODEL_NOT_FOUND",
            metadata=meta,
        )
    if 400 <= status < 500:
        capability = unsupported_capability(error)
        if capability is not None:
            return RpcFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{target.instance} cannot serve this request ({capability}): {upstream_text}",
                reason="CAPABILITY_UNSUPPORTED",
                metadata={**meta, "capability": capability},
            )
        return RpcFailure(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{target.instance} rejected the request: {upstream_text}",
            reason=_bad_request_reason(error),
            metadata=meta,
        )
    return RpcFailure(
        grpc.StatusCode.UNKNOWN,
        f"{target.instance} answered HTTP {status}: {upstream_text}",
        reason="UPSTREAM_ERROR",
        metadata=meta,
    )


def unsupported_capability(error: UpstreamHttpError) -> str | None:
    """The catalog capability an upstream's 4xx says the model lacks, if it says one.

    Such a refusal is about the model, not the request, so the router may try another model
    that declares the capability; a malformed request gets UPSTREAM_BAD_REQUEST instead.
    """
    message = error.message.lower()
    if (error.code or "").lower() not in _UNSUPPORTED_CODES and not any(
        phrase in message for phrase in _UNSUPPORTED_PHRASES
    ):
        return None
    blamed = f"{(error.param or '').lower()} {message}"
    for capability, words in _CAPABILITY_WORDS:
        if any(word in blamed for word in words):
            return capability
    return None


def _bad_request_reason(error: UpstreamHttpError) -> str:
    code = (error.code or "").lower()
    message = error.message.lower()
    if code in _CONTEXT_LENGTH_CODES or any(p in message for p in _CONTEXT_LENGTH_PHRASES):
        return "CONTEXT_LENGTH_EXCEEDED"
    if code in _CONTENT_FILTER_CODES or any(p in message for p in _CONTENT_FILTER_PHRASES):
        return "CONTENT_FILTERED"
    return "UPSTREAM_BAD_REQUEST"


def timed_out(target: UpstreamTarget, timeout_s: float) -> RpcFailure:
    """The upstream did not answer within the deadline."""
    return RpcFailure(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        f"{target.instance} did not answer within {timeout_s:.3f}s",
        reason="UPSTREAM_TIMEOUT",
        metadata=target.metadata(timeout_ms=round(timeout_s * 1000)),
    )


def unreachable(target: UpstreamTarget) -> RpcFailure:
    """The connection to the upstream failed before an answer began."""
    return RpcFailure(
        grpc.StatusCode.UNAVAILABLE,
        f"cannot reach {target.instance}",
        reason="UPSTREAM_UNAVAILABLE",
        metadata=target.metadata(),
        retry_after_s=0.0,
    )


def stream_cut(target: UpstreamTarget) -> RpcFailure:
    """The answer stream ended without its end marker (a dropped connection)."""
    return RpcFailure(
        grpc.StatusCode.UNAVAILABLE,
        f"{target.instance} cut the answer stream short",
        reason="UPSTREAM_STREAM_CUT",
        metadata=target.metadata(),
        retry_after_s=0.0,
    )


def malformed(target: UpstreamTarget, what: str) -> RpcFailure:
    """The upstream sent something that is not its documented format.

    INTERNAL, not UNAVAILABLE: an invariant of the upstream's protocol broke, which a blind
    retry against the same instance is not expected to fix.
    """
    return RpcFailure(
        grpc.StatusCode.INTERNAL,
        f"{target.instance} sent a malformed response: {what}",
        reason="UPSTREAM_MALFORMED_RESPONSE",
        metadata=target.metadata(),
    )


def missing_credentials(target: UpstreamTarget, env_var: str) -> RpcFailure:
    """The instance's key variable is not set, so no request is sent."""
    return RpcFailure(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"{target.instance} has no API key: environment variable {env_var} is not set",
        reason="UPSTREAM_CREDENTIALS_MISSING",
        metadata=target.metadata(api_key_env=env_var),
    )
