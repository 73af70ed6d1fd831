"""A fake Anthropic Messages API: `/v1/messages` as named SSE events, wire-accurate."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from typing import Any

from aiohttp import web

from llmmesh.testing.fake_upstreams._replies import Reply, UpstreamProblem
from llmmesh.testing.fake_upstreams._server import (
    AnswerPlan,
    ChainedFrames,
    FakeUpstream,
    RecordedRequest,
    RenderedFrames,
    StreamFrames,
    json_response,
    request_id,
    retry_after_headers,
)

_PROBLEMS: dict[UpstreamProblem, tuple[int, str, str]] = {
    # problem: (status, error.type, error.message) as the Anthropic API sends them
    UpstreamProblem.RATE_LIMITED: (
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per minute.",
    ),
    UpstreamProblem.SERVER_ERROR: (500, "api_error", "Internal server error"),
    UpstreamProblem.BAD_GATEWAY: (502, "api_error", "Bad gateway"),
    UpstreamProblem.SERVICE_UNAVAILABLE: (503, "api_error", "Service unavailable"),
    UpstreamProblem.GATEWAY_TIMEOUT: (504, "timeout_error", "Request timed out"),
    UpstreamProblem.OVERLOADED: (529, "overloaded_error", "Overloaded"),
    UpstreamProblem.CONTEXT_LENGTH_EXCEEDED: (
        400,
        "invalid_request_error",
        "prompt is too long: 215467 tokens > 200000 maximum",
    ),
    UpstreamProblem.CONTENT_FILTERED: (
        400,
        "invalid_request_error",
        "Output blocked by content filtering policy",
    ),
    UpstreamProblem.BAD_REQUEST: (
        400,
        "invalid_request_error",
        "messages: text content blocks must be non-empty",
    ),
    UpstreamProblem.UNAUTHORIZED: (401, "authentication_error", "invalid x-api-key"),
    UpstreamProblem.FORBIDDEN: (
        403,
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    UpstreamProblem.MODEL_NOT_FOUND: (404, "not_found_error", "model: unknown"),
    UpstreamProblem.TOOLS_UNSUPPORTED: (
        400,
        "invalid_request_error",
        "tools: this model does not support tool use",
    ),
    UpstreamProblem.IMAGES_UNSUPPORTED: (
        400,
        "invalid_request_error",
        "'claude-3-5-haiku-20241022' does not support image input.",
    ),
    UpstreamProblem.SCHEMA_UNSUPPORTED: (
        400,
        "invalid_request_error",
        "output_config.format: structured outputs are not supported on this model",
    ),
}
_IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
# The least budget_tokens extended thinking takes.
_MIN_THINKING_BUDGET = 1024


def _error_body(problem: UpstreamProblem, req_id: str) -> dict[str, Any]:
    _, error_type, message = _PROBLEMS[problem]
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": req_id,
    }


def _event(name: str, payload: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()


def _texts(content: Any) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                yield str(block.get("text", ""))
            elif isinstance(block, dict) and block.get("type") == "tool_result":
                yield from _texts(block.get("content"))


def _blocks(message: Any) -> list[dict[str, Any]]:
    content = message.get("content") if isinstance(message, dict) else None
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _invalid(message: str) -> web.Response:
    error = {"type": "invalid_request_error", "message": message}
    return json_response(400, {"type": "error", "error": error, "request_id": "req_invalid"})


def _request_problem(body: dict[str, Any]) -> web.Response | None:
    """What the real API would refuse in the messages, tools and thinking, if anything."""
    messages = body.get("messages", [])
    uses_tools = any(
        block.get("type") in ("tool_use", "tool_result")
        for message in messages
        for block in _blocks(message)
    )
    if uses_tools and not body.get("tools"):
        return _invalid(
            "Requests which include `tool_use` or `tool_result` blocks must define tools."
        )
    previous_calls: set[str] = set()
    for index, message in enumerate(messages):
        calls: set[str] = set()
        for position, block in enumerate(_blocks(message)):
            where = f"messages.{index}.content.{position}"
            kind = block.get("type")
            if kind == "text" and not block.get("text"):
                return _invalid("messages: text content blocks must be non-empty")
            if kind == "tool_use":
                calls.add(str(block.get("id")))
            if kind == "tool_result" and block.get("tool_use_id") not in previous_calls:
                return _invalid(
                    f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{block.get('tool_use_id')}. Each `tool_result` block must have a "
                    "corresponding `tool_use` block in the previous message."
                )
            if kind == "image" and not _valid_image_source(block.get("source")):
                return _invalid(f"{where}.image.source: invalid image source")
        previous_calls = calls
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or not _MIN_THINKING_BUDGET <= budget < body["max_tokens"]:
            return _invalid(
                "thinking.budget_tokens: must be at least 1024 and less than max_tokens"
            )
    return None


def _valid_image_source(source: Any) -> bool:
    if not isinstance(source, dict):
        return False
    if source.get("type") == "url":
        return str(source.get("url", "")).startswith(("http://", "https://"))
    if source.get("type") != "base64" or source.get("media_type") not in _IMAGE_MEDIA_TYPES:
        return False
    try:
        base64.b64decode(str(source.get("data", "")), validate=True)
    except binascii.Error:
        return False
    return bool(source.get("data"))


def _requested_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    form = (body.get("output_config") or {}).get("format") or {}
    if form.get("type") == "json_schema":
        schema = form.get("schema")
        return schema if isinstance(schema, dict) else {}
    return None


class FakeAnthropic(FakeUpstream):
    """Speaks the Anthropic Messages API as the `anthropic` SDK sees it."""

    kind = "anthropic"

    @property
    def base_url(self) -> str:
        return self.origin

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)

    def _error_response(self, problem: UpstreamProblem, reply: Reply) -> web.Response:
        headers = {"request-id": "req_error", "x-should-retry": "false"}
        if problem is UpstreamProblem.RATE_LIMITED:
            headers.update(retry_after_headers(reply))
        return json_response(_PROBLEMS[problem][0], _error_body(problem, "req_error"), headers)

    def _problem_frame(self, problem: UpstreamProblem) -> bytes:
        body = _error_body(problem, "req_stream_error")
        body.pop("request_id")
        return _event("error", body)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        return await self._exchange(request, self._answer_messages)

    async def _answer_messages(
        self, request: web.Request, record: RecordedRequest, reply: Reply
    ) -> web.StreamResponse:
        body = record.body if isinstance(record.body, dict) else {}
        if not isinstance(body.get("max_tokens"), int):
            # The real API requires max_tokens; a client that forgets it must find out here.
            missing = {"type": "invalid_request_error", "message": "max_tokens: Field required"}
            return json_response(400, {"type": "error", "error": missing})
        if not body.get("stream"):
            return json_response(400, {"type": "error", "error": {"message": "fake only streams"}})
        problem = _request_problem(body)
        if problem is not None:
            return problem
        prompt = [*_texts(body.get("system"))]
        images = 0
        for message in body.get("messages", []):
            prompt.extend(_texts(message.get("content")))
            images += sum(1 for block in _blocks(message) if block.get("type") == "image")
        plan = self._plan_answer(
            reply,
            str(body.get("model", "")),
            prompt,
            body["max_tokens"],
            schema=_requested_schema(body),
            images=images,
            call_id_prefix="toolu_",
        )
        message_id = request_id("msg_")
        chunks, last_block_end = _content_frames(plan)
        frames = StreamFrames(
            content_type="text/event-stream; charset=utf-8",
            headers={"request-id": request_id("req_"), "anthropic-organization-id": "org"},
            opening=self._opening(message_id, plan),
            chunks=chunks,
            closing=[last_block_end, *self._closing(plan, reply)],
            malformed=b'event: content_block_delta\ndata: {"type": "content_block_delta", "ind\n\n',
        )
        return await self._stream(request, record, reply, frames)

    def _opening(self, message_id: str, plan: AnswerPlan) -> list[bytes]:
        # Anthropic bills cached prompt tokens apart: input_tokens excludes them.
        uncached = max(
            plan.input_tokens - plan.cached_input_tokens - plan.cache_write_input_tokens, 0
        )
        message: dict[str, Any] = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": plan.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": uncached,
                "cache_creation_input_tokens": plan.cache_write_input_tokens,
                "cache_read_input_tokens": plan.cached_input_tokens,
                "output_tokens": 1,
            },
        }
        return [
            _event("message_start", {"type": "message_start", "message": message}),
            _event("ping", {"type": "ping"}),
        ]

    def _closing(self, plan: AnswerPlan, reply: Reply) -> list[bytes]:
        if reply.content_filtered_finish:
            stop_reason = "refusal"
        elif plan.tool_calls:
            stop_reason = "tool_use"
        elif plan.stop_sequence is not None:
            stop_reason = "stop_sequence"
        else:
            stop_reason = "max_tokens" if plan.truncated_by_max_tokens else "end_turn"
        usage: dict[str, Any] = {"output_tokens": plan.output_tokens}
        if plan.reasoning_tokens:
            usage["output_tokens_details"] = {"thinking_tokens": plan.reasoning_tokens}
        return [
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": plan.stop_sequence},
                    "usage": usage,
                },
            ),
            _event("message_stop", {"type": "message_stop"}),
        ]


def _block_start(index: int, block: dict[str, Any]) -> bytes:
    return _event(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def _block_delta(index: int, delta: dict[str, Any]) -> bytes:
    return _event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


def _block_stop(index: int) -> bytes:
    return _event("content_block_stop", {"type": "content_block_stop", "index": index})


def _content_frames(plan: AnswerPlan) -> tuple[Sequence[bytes], bytes]:
    """One frame per answer piece, content blocks in the API's order (thinking, text, tool
    uses), and the events that end the last block; the text frames are rendered when sent.

    A block's start event travels with its first piece and its stop with the next block's
    first piece, so a fault after N pieces lands between the same pieces as elsewhere.
    """
    thinking: list[bytes] = []
    ending = b""
    index = 0
    if plan.reasoning:
        for position, piece in enumerate(plan.reasoning):
            start = _block_start(index, {"type": "thinking", "thinking": "", "signature": ""})
            delta = _block_delta(index, {"type": "thinking_delta", "thinking": piece})
            thinking.append(start + delta if position == 0 else delta)
        signature = f"sig-{len(''.join(plan.reasoning))}"
        ending = _block_delta(
            index, {"type": "signature_delta", "signature": signature}
        ) + _block_stop(index)
        index += 1
    text: Sequence[bytes] = []
    if plan.chunks or not plan.tool_calls:
        start = ending + _block_start(index, {"type": "text", "text": ""})
        if not plan.chunks:
            # An empty answer still has its (empty) text block.
            return thinking, start + _block_stop(index)
        text_index = index

        def render_text(position: int) -> bytes:
            delta = _block_delta(text_index, {"type": "text_delta", "text": plan.chunks[position]})
            return start + delta if position == 0 else delta

        text = RenderedFrames(range(len(plan.chunks)), render_text)
        ending = _block_stop(index)
        index += 1
    calls: list[bytes] = []
    for call in plan.tool_calls:
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        calls.append(
            ending
            + _block_start(index, block)
            + _block_delta(index, {"type": "input_json_delta", "partial_json": ""})
        )
        calls += [
            _block_delta(index, {"type": "input_json_delta", "partial_json": piece})
            for piece in call.pieces
        ]
        ending = _block_stop(index)
        index += 1
    return ChainedFrames(thinking, text, calls), ending
