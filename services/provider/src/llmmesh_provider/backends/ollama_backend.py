"""Chat and embeddings through Ollama's native HTTP API (`/api/chat` NDJSON, `/api/embed`)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import httpx

from llmmesh.runtime.errors import RpcFailure
from llmmesh_provider.backend import (
    ChatEvent,
    ChatRequest,
    Completion,
    EmbeddingBatch,
    FinishReason,
    Sampling,
    TextChunk,
    Usage,
)
from llmmesh_provider.backends import UPSTREAM_SOCKET_OPTIONS
from llmmesh_provider.backends.body_lines import texts_by_read
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


class OllamaBackend:
    """One Ollama server: streams chats and embeds."""

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
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
        }
        body.update(_sampling_arguments(request.sampling))
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
                async for text in texts_by_read(response.aiter_bytes(), lines.read):
                    yield TextChunk(text)
        except httpx.TimeoutException:
            raise timed_out(target, request.timeout_s) from None
        except httpx.TransportError:
            raise (stream_cut(target) if body_started else unreachable(target)) from None
        final = lines.final
        if final is None:
            raise stream_cut(target)
        yield Completion(
            finish_reason=_FINISH_REASONS.get(
                str(final.get("done_reason", "stop")), FinishReason.UNSPECIFIED
            ),
            usage=Usage(
                input_tokens=int(final.get("prompt_eval_count") or 0),
                output_tokens=int(final.get("eval_count") or 0),
            ),
            provider_request_id="",  # Ollama assigns no request ids
            response_model=str(final.get("model") or request.model),
        )

    async def embed(self, texts: Sequence[str], model: str, timeout_s: float) -> EmbeddingBatch:
        target = UpstreamTarget(self._instance, BACKEND, model)
        try:
            response = await self._client.post(
                "/api/embed", json={"model": model, "input": list(texts)}, timeout=timeout_s
            )
        except httpx.TimeoutException:
            raise timed_out(target, timeout_s) from None
        except httpx.TransportError:
            raise unreachable(target) from None
        if response.status_code >= 400:
            raise await _http_failure(target, response)
        try:
            vectors = response.json()["embeddings"]
        except (ValueError, KeyError, TypeError):
            raise malformed(target, "the embed response has no embeddings") from None
        if not isinstance(vectors, list) or len(vectors) != len(texts):
            raise malformed(target, "the embed response has the wrong number of embeddings")
        return EmbeddingBatch(
            vectors=[[float(v) for v in vector] for vector in vectors],
            model=str(response.json().get("model") or model),
        )


class _Lines:
    """The NDJSON lines of one chat body: text, and the final line with the usage."""

    def __init__(self, target: UpstreamTarget) -> None:
        self._target = target
        self.final: dict[str, Any] | None = None

    def read(self, line: bytes, texts: list[str]) -> None:
        """Takes one line of the body, appending the text it carries to `texts`."""
        if self.final is not None or not line.strip():
            return
        payload = _parse_line(self._target, line)
        if "error" in payload:
            raise failure_from_http(
                self._target,
                UpstreamHttpError(500, {}, message=str(payload["error"])),
                secret=None,
            )
        content = (payload.get("message") or {}).get("content")
        if isinstance(content, str) and content:
            texts.append(content)
        if payload.get("done") is True:
            self.final = payload


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


def _sampling_arguments(sampling: Sampling) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if sampling.temperature is not None:
        options["temperature"] = sampling.temperature
    if sampling.top_p is not None:
        options["top_p"] = sampling.top_p
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
        arguments["format"] = form.json_schema
    return arguments
