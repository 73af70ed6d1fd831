"""Chat completions and embeddings through the official `openai` SDK (any compatible endpoint)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import httpx2
import openai
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionUserMessageParam,
)

from llmmesh.runtime.errors import RpcFailure
from llmmesh_provider.backend import (
    ChatEvent,
    ChatRequest,
    Completion,
    EmbeddingBatch,
    FinishReason,
    Message,
    Sampling,
    TextChunk,
    Usage,
)
from llmmesh_provider.backends.body_lines import texts_by_read
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
)

BACKEND = "openai"

_FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
}


class OpenAIBackend(KeyedSdkBackend[openai.AsyncOpenAI]):
    """One OpenAI-compatible instance: streams chat completions and embeds."""

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
        # json.loads per frame instead of a pydantic model per chunk, and the text of frames
        # that arrive in one read goes on as one chunk.
        try:
            opened = keyed.client.chat.completions.with_streaming_response.create(
                model=request.model,
                messages=[_message(m) for m in request.messages],
                stream=True,
                stream_options={"include_usage": True},
                timeout=request.timeout_s,
                **_sampling_arguments(request.sampling),
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
            async for text in texts_by_read(response.http_response.aiter_bytes(), frames.read):
                yield TextChunk(text)
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

    async def embed(self, texts: Sequence[str], model: str, timeout_s: float) -> EmbeddingBatch:
        target = UpstreamTarget(self._instance, BACKEND, model)
        keyed = self._keyed
        extra: dict[str, Any] = {}
        if self._embedding_dimensions is not None:
            extra["dimensions"] = self._embedding_dimensions
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
            vectors=[list(item.embedding) for item in ordered], model=response.model or model
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
    """The chat-completion chunks of one SSE body: text, finish reason, usage, ids."""

    def __init__(self, target: UpstreamTarget, api_key: str, requested_model: str) -> None:
        self._target = target
        self._api_key = api_key
        self.response_model = requested_model
        self.chunk_id = ""
        self.usage = Usage()
        self.finish_reason: FinishReason | None = None
        self._done = False

    def read(self, line: bytes, texts: list[str]) -> None:
        """Takes one line of the body, appending the text it carries to `texts`."""
        if self._done or not line.startswith(b"data:"):
            return
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self._done = True
            return
        self._take(_json(self._target, payload), texts)

    def _take(self, chunk: Any, texts: list[str]) -> None:
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
            content = (choice.get("delta") or {}).get("content")
            if content:
                texts.append(content)
            reason = choice.get("finish_reason")
            if reason is not None:
                self.finish_reason = _FINISH_REASONS.get(reason, FinishReason.UNSPECIFIED)


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
    )


def _message(message: Message) -> ChatCompletionMessageParam:
    if message.role == "system":
        system: ChatCompletionSystemMessageParam = {"role": "system", "content": message.content}
        if message.name:
            system["name"] = message.name
        return system
    if message.role == "assistant":
        assistant: ChatCompletionAssistantMessageParam = {
            "role": "assistant",
            "content": message.content,
        }
        if message.name:
            assistant["name"] = message.name
        return assistant
    user: ChatCompletionUserMessageParam = {"role": "user", "content": message.content}
    if message.name:
        user["name"] = message.name
    return user


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
    form = sampling.response_format
    if form.kind == "json_object":
        arguments["response_format"] = {"type": "json_object"}
    elif form.kind == "json_schema":
        arguments["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": form.json_schema, "strict": True},
        }
    return arguments


def _usage_from_dict(usage: dict[str, Any]) -> Usage:
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
        cached_input_tokens=int(details.get("cached_tokens") or 0),
    )
