"""Messages streaming through the official `anthropic` SDK."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import anthropic
import httpx2
from anthropic.types import MessageParam, RawMessageStreamEvent

from llmmesh.runtime.errors import FieldViolation, RpcFailure, invalid_argument
from llmmesh_provider.backend import (
    ChatEvent,
    ChatRequest,
    Completion,
    FinishReason,
    Message,
    Sampling,
    TextChunk,
    Usage,
)
from llmmesh_provider.backends.sdk_clients import (
    KeyedSdkBackend,
    sdk_client_arguments,
    transport_failure,
)
from llmmesh_provider.upstream_errors import (
    UpstreamHttpError,
    UpstreamTarget,
    failure_from_http,
    malformed,
    stream_cut,
    timed_out,
)

BACKEND = "anthropic"

_FINISH_REASONS = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "pause_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}


class AnthropicBackend(KeyedSdkBackend[anthropic.AsyncAnthropic]):
    """One Anthropic instance: streams Messages with the system prompt carried apart."""

    def __init__(
        self,
        instance: str,
        *,
        base_url: str,
        api_key: str,
        request_timeout_s: float,
        default_max_tokens: int,
    ) -> None:
        self._instance = instance
        self._default_max_tokens = default_max_tokens
        super().__init__(
            anthropic.AsyncAnthropic(
                **sdk_client_arguments(
                    api_key=api_key, base_url=base_url, timeout_s=request_timeout_s
                )
            ),
            api_key,
        )

    async def stream_chat(self, request: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        target = UpstreamTarget(self._instance, BACKEND, request.model)
        keyed = self._keyed
        if request.sampling.response_format.kind != "text":
            raise invalid_argument(
                [
                    FieldViolation(
                        "parameters.response_format",
                        "JSON response formats are not supported by the anthropic backend",
                    )
                ]
            )
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        turns = [_turn(m) for m in request.messages if m.role != "system"]
        try:
            stream = await keyed.client.messages.create(
                model=request.model,
                max_tokens=request.sampling.max_tokens or self._default_max_tokens,
                messages=turns,
                stream=True,
                timeout=request.timeout_s,
                **_sampling_arguments(request.sampling, system),
            )
        except anthropic.APIError as exc:
            raise self._failure(
                target, exc, request.timeout_s, keyed.api_key, body_started=False
            ) from None
        header_request_id = stream.response.headers.get("request-id", "")
        message_id = ""
        response_model = request.model
        usage = _UsageTally()
        stop_reason: str | None = None
        finished = False
        try:
            async with stream:
                async for event in _checked(stream, target):
                    if event.type == "message_start":
                        message_id = event.message.id
                        response_model = event.message.model or response_model
                        usage.add(event.message.usage)
                    elif event.type == "content_block_delta":
                        if event.delta.type == "text_delta" and event.delta.text:
                            yield TextChunk(event.delta.text)
                    elif event.type == "message_delta":
                        stop_reason = event.delta.stop_reason or stop_reason
                        usage.add(event.usage)
                    elif event.type == "message_stop":
                        finished = True
        except anthropic.APIError as exc:
            raise self._failure(
                target, exc, request.timeout_s, keyed.api_key, body_started=True
            ) from None
        # Unlike the openai SDK, this one lets transport errors that happen while reading the
        # event stream escape unwrapped.
        except httpx2.TimeoutException:
            raise timed_out(target, request.timeout_s) from None
        except httpx2.TransportError:
            raise stream_cut(target) from None
        if not finished:
            raise stream_cut(target)
        yield Completion(
            finish_reason=_FINISH_REASONS.get(stop_reason or "", FinishReason.UNSPECIFIED),
            usage=usage.total(),
            provider_request_id=header_request_id or message_id,
            response_model=response_model,
        )

    def _failure(
        self,
        target: UpstreamTarget,
        exc: anthropic.APIError,
        timeout_s: float,
        api_key: str,
        *,
        body_started: bool,
    ) -> RpcFailure:
        transport = transport_failure(anthropic, target, exc, timeout_s, body_started=body_started)
        if transport is not None:
            return transport
        if isinstance(exc, anthropic.APIStatusError):
            # An in-stream `error` event arrives as an APIStatusError with the stream's 200.
            return failure_from_http(
                target,
                UpstreamHttpError(
                    status=exc.status_code,
                    headers=_headers(exc),
                    error_type=exc.type,
                    code=exc.error_code,
                    message=exc.api_message or exc.message,
                ),
                secret=api_key,
            )
        return failure_from_http(
            target,
            UpstreamHttpError(status=500, headers={}, message=exc.message),
            secret=api_key,
        )


class _UsageTally:
    """Anthropic reports usage in message_start and again (cumulatively) in message_delta."""

    def __init__(self) -> None:
        self.input_tokens = 0
        self.cache_read_tokens = 0
        self.cache_creation_tokens = 0
        self.output_tokens = 0

    def add(self, usage: Any) -> None:
        # Later reports are cumulative, so a reported value replaces the earlier one.
        if getattr(usage, "input_tokens", None) is not None:
            self.input_tokens = usage.input_tokens
        if getattr(usage, "cache_read_input_tokens", None) is not None:
            self.cache_read_tokens = usage.cache_read_input_tokens
        if getattr(usage, "cache_creation_input_tokens", None) is not None:
            self.cache_creation_tokens = usage.cache_creation_input_tokens
        if getattr(usage, "output_tokens", None) is not None:
            self.output_tokens = usage.output_tokens

    def total(self) -> Usage:
        # Anthropic's input_tokens excludes cache reads and writes; the gateway's input
        # count is every prompt token, with the cached share reported beside it.
        return Usage(
            input_tokens=self.input_tokens + self.cache_read_tokens + self.cache_creation_tokens,
            output_tokens=self.output_tokens,
            cached_input_tokens=self.cache_read_tokens,
        )


async def _checked(
    stream: anthropic.AsyncStream[RawMessageStreamEvent], target: UpstreamTarget
) -> AsyncIterator[RawMessageStreamEvent]:
    """The stream's events; an event that is not JSON becomes an RpcFailure."""
    iterator = stream.__aiter__()
    while True:
        try:
            event = await iterator.__anext__()
        except StopAsyncIteration:
            return
        except ValueError as exc:  # json.JSONDecodeError from the SDK's SSE decoder
            raise malformed(target, f"an event is not JSON: {exc}") from None
        if not isinstance(getattr(event, "type", None), str):
            raise malformed(target, "an event without a type")
        yield event


def _turn(message: Message) -> MessageParam:
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}
    return {"role": "user", "content": message.content}


def _headers(exc: anthropic.APIStatusError) -> Mapping[str, str]:
    return exc.response.headers if exc.status_code >= 400 else {}


def _sampling_arguments(sampling: Sampling, system: str) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    if system:
        arguments["system"] = system
    if sampling.stop:
        arguments["stop_sequences"] = list(sampling.stop)
    # The SDK's typed signature no longer lists the sampling knobs; the API still takes them.
    extra_body: dict[str, Any] = {}
    if sampling.temperature is not None:
        extra_body["temperature"] = sampling.temperature
    if sampling.top_p is not None:
        extra_body["top_p"] = sampling.top_p
    if extra_body:
        arguments["extra_body"] = extra_body
    return arguments
