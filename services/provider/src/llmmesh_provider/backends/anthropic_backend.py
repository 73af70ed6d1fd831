"""Messages streaming through the official `anthropic` SDK."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import anthropic
import httpx2
from anthropic.types import (
    ContentBlockParam,
    MessageParam,
    RawMessageStreamEvent,
    ThinkingConfigParam,
    ToolChoiceParam,
    ToolParam,
    ToolResultBlockParam,
)

from llmmesh.runtime.errors import FieldViolation, RpcFailure, invalid_argument
from llmmesh_provider.backend import (
    ChatEvent,
    ChatRequest,
    Completion,
    Delta,
    FinishReason,
    ImagePart,
    Message,
    ReasoningChunk,
    ReasoningEffort,
    ReasoningPart,
    Sampling,
    TextChunk,
    TextPart,
    ToolCallChunk,
    Tools,
    Usage,
)
from llmmesh_provider.backends.sdk_clients import (
    KeyedSdkBackend,
    sdk_client_arguments,
    transport_failure,
)
from llmmesh_provider.features import supporting
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

# The Messages API has no seed: sampling is not reproducible, but the answer is still one the
# caller asked for, so the seed is left out and named.
FEATURES = supporting(dropped=("seed",))

# Thinking budgets by effort (the API's minimum is 1024); a budget is at most half of
# max_tokens, so reasoning never crowds out the answer.
THINKING_BUDGET_TOKENS: dict[ReasoningEffort, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 24576,
}
MIN_THINKING_BUDGET_TOKENS = 1024


class AnthropicBackend(KeyedSdkBackend[anthropic.AsyncAnthropic]):
    """One Anthropic instance: streams Messages with the system prompt carried apart."""

    features = FEATURES

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
        max_tokens = request.sampling.max_tokens or self._default_max_tokens
        system = "\n\n".join(m.text for m in request.messages if m.role == "system")
        try:
            stream = await keyed.client.messages.create(
                model=request.model,
                max_tokens=max_tokens,
                messages=_turns(request.messages),
                stream=True,
                timeout=request.timeout_s,
                **_sampling_arguments(request.sampling, system, max_tokens),
                **_tool_arguments(request.tools),
                **_user_arguments(request.user),
            )
        except anthropic.APIError as exc:
            raise self._failure(
                target, exc, request.timeout_s, keyed.api_key, body_started=False
            ) from None
        header_request_id = stream.response.headers.get("request-id", "")
        blocks = _Blocks()
        try:
            async with stream:
                async for event in _checked(stream, target):
                    for delta in blocks.take(event):
                        yield delta
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
        if not blocks.finished:
            raise stream_cut(target)
        yield Completion(
            finish_reason=_FINISH_REASONS.get(blocks.stop_reason or "", FinishReason.UNSPECIFIED),
            usage=blocks.usage.total(),
            provider_request_id=header_request_id or blocks.message_id,
            response_model=blocks.response_model or request.model,
            stop_sequence=blocks.stop_sequence,
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


class _Blocks:
    """The events of one stream as deltas: text, tool calls (numbered among the calls, not
    among all content blocks) and thinking; then the stop reason and usage."""

    def __init__(self) -> None:
        self.message_id = ""
        self.response_model = ""
        self.usage = _UsageTally()
        self.stop_reason: str | None = None
        self.stop_sequence = ""
        self.finished = False
        # Content block index -> (tool call index, whether arguments arrived).
        self._calls: dict[int, list[Any]] = {}

    def take(self, event: RawMessageStreamEvent) -> list[Delta]:
        if event.type == "message_start":
            self.message_id = event.message.id
            self.response_model = event.message.model or ""
            self.usage.add(event.message.usage)
        elif event.type == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                index = len(self._calls)
                self._calls[event.index] = [index, False]
                return [ToolCallChunk(index=index, id=block.id, name=block.name)]
        elif event.type == "content_block_delta":
            return self._delta(event.index, event.delta)
        elif event.type == "content_block_stop":
            call = self._calls.get(event.index)
            if call is not None and not call[1]:
                # A call without arguments streams none; its arguments are the empty object.
                return [ToolCallChunk(index=call[0], arguments="{}")]
        elif event.type == "message_delta":
            self.stop_reason = event.delta.stop_reason or self.stop_reason
            self.stop_sequence = event.delta.stop_sequence or self.stop_sequence
            self.usage.add(event.usage)
        elif event.type == "message_stop":
            self.finished = True
        return []

    def _delta(self, block_index: int, delta: Any) -> list[Delta]:
        if delta.type == "text_delta" and delta.text:
            return [TextChunk(delta.text)]
        if delta.type == "input_json_delta" and delta.partial_json:
            call = self._calls.get(block_index)
            if call is None:
                return []
            call[1] = True
            return [ToolCallChunk(index=call[0], arguments=delta.partial_json)]
        if delta.type == "thinking_delta" and delta.thinking:
            return [ReasoningChunk(delta.thinking)]
        if delta.type == "signature_delta" and delta.signature:
            return [ReasoningChunk(signature=delta.signature)]
        return []


class _UsageTally:
    """Anthropic reports usage in message_start and again (cumulatively) in message_delta."""

    def __init__(self) -> None:
        self.input_tokens = 0
        self.cache_read_tokens = 0
        self.cache_creation_tokens = 0
        self.output_tokens = 0
        self.thinking_tokens = 0

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
        thinking_tokens = getattr(
            getattr(usage, "output_tokens_details", None), "thinking_tokens", None
        )
        if thinking_tokens is not None:
            self.thinking_tokens = thinking_tokens

    def total(self) -> Usage:
        # Anthropic's input_tokens excludes cache reads and writes; the gateway's input
        # count is every prompt token, with the cached share reported beside it.
        return Usage(
            input_tokens=self.input_tokens + self.cache_read_tokens + self.cache_creation_tokens,
            output_tokens=self.output_tokens,
            cached_input_tokens=self.cache_read_tokens,
            cache_write_input_tokens=self.cache_creation_tokens,
            reasoning_tokens=self.thinking_tokens,
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


def _turns(messages: tuple[Message, ...]) -> list[MessageParam]:
    """The conversation as alternating turns: tool results go in a user turn, and adjacent
    messages of one side (parallel tool results, say) are joined into one turn."""
    turns: list[MessageParam] = []
    for message in messages:
        if message.role == "system":
            continue
        role: Any = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if turns and turns[-1]["role"] == role:
            previous = turns[-1]["content"]
            assert isinstance(previous, list)
            previous.extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _blocks(message: Message) -> list[ContentBlockParam]:
    if message.role == "tool":
        result: ToolResultBlockParam = {"type": "tool_result", "tool_use_id": message.tool_call_id}
        if message.text:
            result["content"] = message.text
        return [result]
    blocks: list[ContentBlockParam] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append({"type": "image", "source": _image_source(part)})
        elif isinstance(part, ReasoningPart):
            blocks.append({"type": "thinking", "thinking": part.text, "signature": part.signature})
    for call in message.tool_calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": json.loads(call.arguments_json),
            }
        )
    return blocks


def _image_source(image: ImagePart) -> Any:
    if image.url:
        return {"type": "url", "url": image.url}
    return {
        "type": "base64",
        "media_type": image.media_type,
        "data": base64.b64encode(image.data).decode(),
    }


def _headers(exc: anthropic.APIStatusError) -> Mapping[str, str]:
    return exc.response.headers if exc.status_code >= 400 else {}


def _sampling_arguments(sampling: Sampling, system: str, max_tokens: int) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    if system:
        arguments["system"] = system
    if sampling.stop:
        arguments["stop_sequences"] = list(sampling.stop)
    if sampling.reasoning_effort is not None:
        arguments["thinking"] = _thinking(sampling.reasoning_effort, max_tokens)
    form = sampling.response_format
    if form.kind != "text":
        # Structured outputs, the API's own way: the answer text is JSON matching the schema.
        schema = dict(form.json_schema or {}) if form.kind == "json_schema" else {"type": "object"}
        arguments["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    # The SDK's typed signature no longer lists the sampling knobs; the API still takes them.
    extra_body: dict[str, Any] = {}
    if sampling.temperature is not None:
        extra_body["temperature"] = sampling.temperature
    if sampling.top_p is not None:
        extra_body["top_p"] = sampling.top_p
    if sampling.top_k is not None:
        extra_body["top_k"] = sampling.top_k
    if extra_body:
        arguments["extra_body"] = extra_body
    return arguments


def _user_arguments(user: str) -> dict[str, Any]:
    # The API's field for an opaque end-user id, used for abuse detection.
    return {"metadata": {"user_id": user}} if user else {}


def _thinking(effort: ReasoningEffort, max_tokens: int) -> ThinkingConfigParam:
    if effort == "none":
        return {"type": "disabled"}
    budget = max(MIN_THINKING_BUDGET_TOKENS, min(THINKING_BUDGET_TOKENS[effort], max_tokens // 2))
    if budget >= max_tokens:
        raise invalid_argument(
            [
                FieldViolation(
                    "parameters.max_tokens",
                    f"reasoning on anthropic needs max_tokens above {MIN_THINKING_BUDGET_TOKENS}"
                    " (the thinking budget counts toward it)",
                )
            ]
        )
    return {"type": "enabled", "budget_tokens": budget}


def _tool_arguments(tools: Tools) -> dict[str, Any]:
    if not tools.offered:
        return {}
    definitions: list[ToolParam] = []
    for tool in tools.offered:
        definition: ToolParam = {"name": tool.name, "input_schema": dict(tool.parameters)}
        if tool.description:
            definition["description"] = tool.description
        if tool.strict:
            definition["strict"] = True
        definitions.append(definition)
    arguments: dict[str, Any] = {"tools": definitions}
    mode = tools.choice.mode if tools.choice is not None else None
    choice: ToolChoiceParam | None = None
    if mode == "none":
        choice = {"type": "none"}
    elif mode == "required":
        choice = {"type": "any"}
    elif mode == "named" and tools.choice is not None:
        choice = {"type": "tool", "name": tools.choice.name}
    elif mode == "auto" or tools.parallel_calls is False:
        choice = {"type": "auto"}
    if choice is not None and tools.parallel_calls is False and choice["type"] != "none":
        choice["disable_parallel_tool_use"] = True
    if choice is not None:
        arguments["tool_choice"] = choice
    return arguments
