"""Chat completions and embeddings through the official `openai` SDK (any compatible endpoint)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import httpx2
import openai
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionContentPartParam,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionToolChoiceOptionParam,
    ChatCompletionToolMessageParam,
    ChatCompletionUserMessageParam,
)

from llmmesh.runtime.errors import RpcFailure
from llmmesh_provider.backend import (
    ChatEvent,
    ChatRequest,
    Completion,
    Delta,
    EmbeddingBatch,
    FinishReason,
    ImagePart,
    Message,
    ReasoningChunk,
    Sampling,
    TextChunk,
    TextPart,
    ToolCallChunk,
    Tools,
    Usage,
)
from llmmesh_provider.backends.body_lines import deltas_by_read
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
)

BACKEND = "openai"

_FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
}

# Chat Completions has no top_k (a hint the answer does without) and no field for earlier
# reasoning (OpenAI's own models do not take it back either).
FEATURES = supporting(dropped=("top_k", "reasoning_parts"))


class OpenAIBackend(KeyedSdkBackend[openai.AsyncOpenAI]):
    """One OpenAI-compatible instance: streams chat completions and embeds."""

    features = FEATURES

    def __init__(
        self,
        instance: str,
        *,
        base_url: str,
        api_key: str,
        request_timeout_s: float,
        embedding_dimensions: int | None = None,
    ) -> None:
        self._instance = instance
        self._embedding_dimensions = embedding_dimensions
        super().__init__(
            openai.AsyncOpenAI(
                **sdk_client_arguments(
                    api_key=api_key, base_url=base_url, timeout_s=request_timeout_s
                )
            ),
            api_key,
        )

    async def stream_chat(self, request: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        target = UpstreamTarget(self._instance, BACKEND, request.model)
        keyed = self._keyed
        # The SDK builds, sends and checks the request; the SSE body is read raw, with one
        # json.loads per frame instead of a pydantic model per chunk, and the pieces of
        # frames that arrive in one read go on together.
        try:
            opened = keyed.client.chat.completions.with_streaming_response.create(
                model=request.model,
                messages=[_message(m) for m in request.messages],
                stream=True,
                stream_options={"include_usage": True},
                timeout=request.timeout_s,
                **_sampling_arguments(request.sampling),
                **_tool_arguments(request.tools),
                **_user_arguments(request.user),
            )
            response = await opened.__aenter__()
        except openai.APIError as exc:
            raise self._failure(
                target, exc, request.timeout_s, keyed.api_key, body_started=False
            ) from None
        header_request_id = response.headers.get("x-request-id", "")
        frames = _Frames(target, keyed.api_key, request.model)
        try:
            # Read to the end of the body even after [DONE]: a response closed with bytes
            # unread (the chunked terminator) takes its connection out of the pool.
            async for delta in deltas_by_read(response.http_response.aiter_bytes(), frames.read):
                yield delta
        except (openai.APIError, httpx2.HTTPError) as exc:
            if isinstance(exc, httpx2.HTTPError):
                raise stream_cut(target) from None
            raise self._failure(
                target, exc, request.timeout_s, keyed.api_key, body_started=True
            ) from None
        finally:
            await opened.__aexit__(None, None, None)
        if frames.finish_reason is None:
            # The body ended cleanly but without a finish reason: a proxy cut it short.
            raise stream_cut(target)
        yield Completion(
            finish_reason=frames.finish_reason,
            usage=frames.usage,
            provider_request_id=header_request_id or frames.chunk_id,
            response_model=frames.response_model,
        )

    async def embed(
        self, texts: Sequence[str], model: str, timeout_s: float, dimensions: int | None = None
    ) -> EmbeddingBatch:
        target = UpstreamTarget(self._instance, BACKEND, model)
        keyed = self._keyed
        extra: dict[str, Any] = {}
        if (dimensions or self._embedding_dimensions) is not None:
            extra["dimensions"] = dimensions or self._embedding_dimensions
        try:
            response = await keyed.client.embeddings.create(
                model=model,
                input=list(texts),
                encoding_format="float",
                timeout=timeout_s,
                **extra,
            )
        except openai.APIError as exc:
            raise self._failure(target, exc, timeout_s, keyed.api_key, body_started=False) from None
        ordered = sorted(response.data, key=lambda item: item.index)
        if len(ordered) != len(texts):
            raise malformed(target, f"{len(ordered)} embeddings for {len(texts)} inputs")
        return EmbeddingBatch(
            vectors=[list(item.embedding) for item in ordered],
            model=response.model or model,
            input_tokens=response.usage.prompt_tokens if response.usage else 0,
        )

    def _failure(
        self,
        target: UpstreamTarget,
        exc: openai.APIError,
        timeout_s: float,
        api_key: str,
        *,
        body_started: bool,
    ) -> RpcFailure:
        transport = transport_failure(openai, target, exc, timeout_s, body_started=body_started)
        if transport is not None:
            return transport
        if isinstance(exc, openai.APIStatusError):
            return failure_from_http(
                target,
                _http_error(exc.status_code, exc.response.headers, exc.body, exc.message),
                secret=api_key,
            )
        # An error object sent inside a 200 stream: the upstream gave up part-way.
        return failure_from_http(
            target, _http_error(500, {}, exc.body, exc.message), secret=api_key
        )


class _Frames:
    """The chat-completion chunks of one SSE body: deltas, finish reason, usage, ids."""

    def __init__(self, target: UpstreamTarget, api_key: str, requested_model: str) -> None:
        self._target = target
        self._api_key = api_key
        self.response_model = requested_model
        self.chunk_id = ""
        self.usage = Usage()
        self.finish_reason: FinishReason | None = None
        self._done = False

    def read(self, line: bytes, deltas: list[Delta]) -> None:
        """Takes one line of the body, appending the deltas it carries."""
        if self._done or not line.startswith(b"data:"):
            return
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self._done = True
            return
        self._take(_json(self._target, payload), deltas)

    def _take(self, chunk: Any, deltas: list[Delta]) -> None:
        if not isinstance(chunk, dict):
            raise malformed(self._target, "a chunk is not a JSON object")
        if "error" in chunk:
            raise failure_from_http(
                self._target,
                _http_error(500, {}, chunk, "error in stream"),
                secret=self._api_key,
            )
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise malformed(self._target, "chunk without choices")
        self.chunk_id = self.chunk_id or chunk.get("id", "")
        self.response_model = chunk.get("model") or self.response_model
        if chunk.get("usage"):
            self.usage = _usage_from_dict(chunk["usage"])
        for choice in choices:
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise malformed(self._target, "a choice's delta is not an object")
            # OpenAI-compatible servers (vLLM, DeepSeek, OpenRouter) stream reasoning apart
            # from the answer under one of these names; OpenAI itself sends none.
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                deltas.append(ReasoningChunk(reasoning))
            content = delta.get("content")
            if content:
                deltas.append(TextChunk(content))
            for call in delta.get("tool_calls") or ():
                deltas.append(self._tool_call(call))
            reason = choice.get("finish_reason")
            if reason is not None:
                self.finish_reason = _FINISH_REASONS.get(reason, FinishReason.UNSPECIFIED)

    def _tool_call(self, call: Any) -> ToolCallChunk:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(call.get("index"), int):
            raise malformed(self._target, "a tool call without an index or function")
        return ToolCallChunk(
            index=call["index"],
            id=str(call.get("id") or ""),
            name=str(function.get("name") or ""),
            arguments=str(function.get("arguments") or ""),
        )


def _json(target: UpstreamTarget, payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise malformed(target, f"a chunk is not JSON: {exc}") from None


def _http_error(
    status: int, headers: Mapping[str, str], body: object, fallback_message: str
) -> UpstreamHttpError:
    error: Any = body.get("error", body) if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return UpstreamHttpError(status=status, headers=headers, message=fallback_message)
    return UpstreamHttpError(
        status=status,
        headers=headers,
        code=str(error["code"]) if error.get("code") is not None else None,
        error_type=str(error["type"]) if error.get("type") is not None else None,
        message=str(error.get("message") or fallback_message),
        param=str(error["param"]) if error.get("param") is not None else None,
    )


def _message(message: Message) -> ChatCompletionMessageParam:
    if message.role == "system":
        system: ChatCompletionSystemMessageParam = {"role": "system", "content": message.text}
        if message.name:
            system["name"] = message.name
        return system
    if message.role == "tool":
        tool: ChatCompletionToolMessageParam = {
            "role": "tool",
            "tool_call_id": message.tool_call_id,
            "content": message.text,
        }
        return tool
    if message.role == "assistant":
        assistant: ChatCompletionAssistantMessageParam = {
            "role": "assistant",
            # An assistant turn that only calls tools has no content at all.
            "content": message.text or (None if message.tool_calls else ""),
        }
        if message.tool_calls:
            assistant["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json},
                }
                for call in message.tool_calls
            ]
        if message.name:
            assistant["name"] = message.name
        return assistant
    user: ChatCompletionUserMessageParam = {"role": "user", "content": _user_content(message)}
    if message.name:
        user["name"] = message.name
    return user


def _user_content(message: Message) -> str | list[ChatCompletionContentPartParam]:
    if not message.images:
        return message.text
    content: list[ChatCompletionContentPartParam] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            content.append({"type": "image_url", "image_url": {"url": _image_url(part)}})
    return content


def _image_url(image: ImagePart) -> str:
    """The URL as given, or the bytes as a data URL (how the API takes inline images)."""
    if image.url:
        return image.url
    return f"data:{image.media_type};base64,{base64.b64encode(image.data).decode()}"


def _tool_arguments(tools: Tools) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    if tools.offered:
        definitions: list[ChatCompletionFunctionToolParam] = []
        for tool in tools.offered:
            definition: ChatCompletionFunctionToolParam = {
                "type": "function",
                "function": {"name": tool.name, "parameters": dict(tool.parameters)},
            }
            if tool.description:
                definition["function"]["description"] = tool.description
            if tool.strict:
                definition["function"]["strict"] = True
            definitions.append(definition)
        arguments["tools"] = definitions
    # The API refuses a tool choice or parallel switch without tools; with none offered
    # neither has anything to say.
    if tools.choice is not None and tools.offered:
        choice: ChatCompletionToolChoiceOptionParam
        if tools.choice.mode == "named":
            choice = {"type": "function", "function": {"name": tools.choice.name}}
        else:
            choice = tools.choice.mode
        arguments["tool_choice"] = choice
    if tools.parallel_calls is not None and tools.offered:
        arguments["parallel_tool_calls"] = tools.parallel_calls
    return arguments


def _user_arguments(user: str) -> dict[str, Any]:
    # `safety_identifier` replaces the deprecated `user` for telling end users apart.
    return {"safety_identifier": user} if user else {}


def _sampling_arguments(sampling: Sampling) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    if sampling.temperature is not None:
        arguments["temperature"] = sampling.temperature
    if sampling.top_p is not None:
        arguments["top_p"] = sampling.top_p
    if sampling.max_tokens:
        arguments["max_completion_tokens"] = sampling.max_tokens
    if sampling.stop:
        arguments["stop"] = list(sampling.stop)
    if sampling.seed is not None:
        arguments["seed"] = sampling.seed
    if sampling.reasoning_effort is not None:
        arguments["reasoning_effort"] = sampling.reasoning_effort
    form = sampling.response_format
    if form.kind == "json_object":
        arguments["response_format"] = {"type": "json_object"}
    elif form.kind == "json_schema":
        arguments["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": form.name,
                "schema": dict(form.json_schema or {}),
                "strict": form.strict,
            },
        }
    return arguments


def _usage_from_dict(usage: dict[str, Any]) -> Usage:
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
        cached_input_tokens=int(prompt.get("cached_tokens") or 0),
        cache_write_input_tokens=int(prompt.get("cache_write_tokens") or 0),
        reasoning_tokens=int(completion.get("reasoning_tokens") or 0),
    )
