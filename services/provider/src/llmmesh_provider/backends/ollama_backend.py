"""Chat and embeddings through Ollama's native HTTP API (`/api/chat` NDJSON, `/api/embed`).

Spoken over httpx rather than the official `ollama` client: that client rewrites tool
schemas through a pydantic model that keeps only a few keywords of each property (nested
objects, `anyOf`, `minimum` and the like vanish without a word), drops the response headers
of errors (a 429's retry advice) and parses every streamed line into a model. The
measurements behind this choice are in services/provider/README.md.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import httpx

from llmmesh.runtime.errors import RpcFailure
from llmmesh_provider.backend import (
    ChatEvent,
    ChatRequest,
    Completion,
    Delta,
    EmbeddingBatch,
    FinishReason,
    Message,
    ReasoningChunk,
    ReasoningEffort,
    Sampling,
    TextChunk,
    ToolCallChunk,
    Tools,
    Usage,
)
from llmmesh_provider.backends import UPSTREAM_SOCKET_OPTIONS
from llmmesh_provider.backends.body_lines import deltas_by_read
from llmmesh_provider.features import supporting
from llmmesh_provider.upstream_errors import (
    UpstreamHttpError,
    UpstreamTarget,
    failure_from_http,
    malformed,
    stream_cut,
    timed_out,
    unreachable,
)

BACKEND = "ollama"

_FINISH_REASONS = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}

# Ollama cannot force a tool call, switch parallel calls off, constrain call arguments, or
# fetch an image by URL (it takes image bytes only, and the gateway fetches nothing).
FEATURES = supporting(
    refused=(
        "tool_choice_required",
        "tool_choice_named",
        "parallel_tool_calls_off",
        "tool_strict",
        "image_url",
    )
)
# Ollama's `think` takes a level (gpt-oss) or a switch.
_THINK: dict[ReasoningEffort, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
}


class OllamaBackend:
    """One Ollama server: streams chats and embeds."""

    features = FEATURES

    def __init__(self, instance: str, *, base_url: str, request_timeout_s: float) -> None:
        self._instance = instance
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=request_timeout_s,
            transport=httpx.AsyncHTTPTransport(socket_options=UPSTREAM_SOCKET_OPTIONS),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def stream_chat(self, request: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        target = UpstreamTarget(self._instance, BACKEND, request.model)
        body: dict[str, Any] = {
            "model": request.model,
            "messages": _messages(request.messages),
            "stream": True,
        }
        body.update(_sampling_arguments(request.sampling))
        body.update(_tool_arguments(request.tools))
        body_started = False
        try:
            async with self._client.stream(
                "POST", "/api/chat", json=body, timeout=request.timeout_s
            ) as response:
                if response.status_code >= 400:
                    raise await _http_failure(target, response)
                body_started = True
                lines = _Lines(target)
                # Read to the end of the body even after the final line: a response closed
                # with bytes unread takes its connection out of the pool.
                async for delta in deltas_by_read(response.aiter_bytes(), lines.read):
                    yield delta
        except httpx.TimeoutException:
            raise timed_out(target, request.timeout_s) from None
        except httpx.TransportError:
            raise (stream_cut(target) if body_started else unreachable(target)) from None
        final = lines.final
        if final is None:
            raise stream_cut(target)
        finish_reason = _FINISH_REASONS.get(
            str(final.get("done_reason", "stop")), FinishReason.UNSPECIFIED
        )
        if lines.tool_calls and finish_reason is FinishReason.STOP:
            # Ollama says "stop" after calling tools; the contract says why it stopped.
            finish_reason = FinishReason.TOOL_CALLS
        yield Completion(
            finish_reason=finish_reason,
            usage=Usage(
                input_tokens=int(final.get("prompt_eval_count") or 0),
                output_tokens=int(final.get("eval_count") or 0),
            ),
            provider_request_id="",  # Ollama assigns no request ids
            response_model=str(final.get("model") or request.model),
        )

    async def embed(
        self, texts: Sequence[str], model: str, timeout_s: float, dimensions: int | None = None
    ) -> EmbeddingBatch:
        target = UpstreamTarget(self._instance, BACKEND, model)
        body: dict[str, Any] = {"model": model, "input": list(texts)}
        if dimensions is not None:
            body["dimensions"] = dimensions
        try:
            response = await self._client.post("/api/embed", json=body, timeout=timeout_s)
        except httpx.TimeoutException:
            raise timed_out(target, timeout_s) from None
        except httpx.TransportError:
            raise unreachable(target) from None
        if response.status_code >= 400:
            raise await _http_failure(target, response)
        try:
            payload = response.json()
            vectors = payload["embeddings"]
        except (ValueError, KeyError, TypeError):
            raise malformed(target, "the embed response has no embeddings") from None
        if not isinstance(vectors, list) or len(vectors) != len(texts):
            raise malformed(target, "the embed response has the wrong number of embeddings")
        return EmbeddingBatch(
            vectors=[[float(v) for v in vector] for vector in vectors],
            model=str(payload.get("model") or model),
            input_tokens=int(payload.get("prompt_eval_count") or 0),
        )


class _Lines:
    """The NDJSON lines of one chat body: deltas, and the final line with the usage."""

    def __init__(self, target: UpstreamTarget) -> None:
        self._target = target
        self.final: dict[str, Any] | None = None
        self.tool_calls = 0

    def read(self, line: bytes, deltas: list[Delta]) -> None:
        """Takes one line of the body, appending the deltas it carries."""
        if self.final is not None or not line.strip():
            return
        payload = _parse_line(self._target, line)
        if "error" in payload:
            raise failure_from_http(
                self._target,
                UpstreamHttpError(500, {}, message=str(payload["error"])),
                secret=None,
            )
        message = payload.get("message") or {}
        if not isinstance(message, dict):
            raise malformed(self._target, "a line's message is not an object")
        thinking = message.get("thinking")
        if isinstance(thinking, str) and thinking:
            deltas.append(ReasoningChunk(thinking))
        content = message.get("content")
        if isinstance(content, str) and content:
            deltas.append(TextChunk(content))
        for call in message.get("tool_calls") or ():
            deltas.append(self._tool_call(call))
        if payload.get("done") is True:
            self.final = payload

    def _tool_call(self, call: Any) -> ToolCallChunk:
        # Ollama sends each call whole, with its arguments as an object.
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise malformed(self._target, "a tool call without a function name")
        index = self.tool_calls
        self.tool_calls += 1
        return ToolCallChunk(
            index=index,
            # Servers that number calls send an id; older ones do not, and callers need one
            # to answer the call.
            id=str(call.get("id") or f"call_{uuid.uuid4().hex[:24]}"),
            name=function["name"],
            arguments=json.dumps(function.get("arguments") or {}),
        )


def _parse_line(target: UpstreamTarget, line: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(line)
    except ValueError as exc:
        raise malformed(target, f"a line is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise malformed(target, "a line is not a JSON object")
    return payload


async def _http_failure(target: UpstreamTarget, response: httpx.Response) -> RpcFailure:
    await response.aread()
    try:
        message = str(response.json().get("error", ""))
    except (ValueError, AttributeError):
        message = response.text
    return failure_from_http(
        target,
        UpstreamHttpError(status=response.status_code, headers=response.headers, message=message),
        secret=None,
    )


def _messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    # A tool result names its tool, not the call: the call's name comes from the turn that
    # made it (validation made sure there is one).
    names = {call.id: call.name for message in messages for call in message.tool_calls}
    return [_message(message, names) for message in messages]


def _message(message: Message, call_names: Mapping[str, str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": message.role, "content": message.text}
    if message.images:
        entry["images"] = [base64.b64encode(image.data).decode() for image in message.images]
    if message.reasoning:
        entry["thinking"] = "".join(part.text for part in message.reasoning)
    if message.tool_calls:
        entry["tool_calls"] = [
            {"function": {"name": call.name, "arguments": json.loads(call.arguments_json)}}
            for call in message.tool_calls
        ]
    if message.role == "tool":
        entry["tool_name"] = call_names.get(message.tool_call_id, "")
    return entry


def _tool_arguments(tools: Tools) -> dict[str, Any]:
    # Ollama has no tool choice: "none" is honoured by offering no tools.
    if not tools.offered or (tools.choice is not None and tools.choice.mode == "none"):
        return {}
    return {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": dict(tool.parameters),
                },
            }
            for tool in tools.offered
        ]
    }


def _sampling_arguments(sampling: Sampling) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if sampling.temperature is not None:
        options["temperature"] = sampling.temperature
    if sampling.top_p is not None:
        options["top_p"] = sampling.top_p
    if sampling.top_k is not None:
        options["top_k"] = sampling.top_k
    if sampling.max_tokens:
        options["num_predict"] = sampling.max_tokens
    if sampling.stop:
        options["stop"] = list(sampling.stop)
    if sampling.seed is not None:
        options["seed"] = sampling.seed
    arguments: dict[str, Any] = {"options": options} if options else {}
    form = sampling.response_format
    if form.kind == "json_object":
        arguments["format"] = "json"
    elif form.kind == "json_schema":
        arguments["format"] = dict(form.json_schema or {})
    if sampling.reasoning_effort is not None:
        arguments["think"] = _THINK[sampling.reasoning_effort]
    return arguments
