"""A fake Anthropic Messages API: `/v1/messages` as named SSE events, wire-accurate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from llmmesh.testing.fake_upstreams._replies import Reply, UpstreamProblem
from llmmesh.testing.fake_upstreams._server import (
    AnswerPlan,
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
}


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
        prompt = [*_texts(body.get("system"))]
        for message in body.get("messages", []):
            prompt.extend(_texts(message.get("content")))
        plan = self._plan_answer(reply, str(body.get("model", "")), prompt, body["max_tokens"])
        message_id = request_id("msg_")
        frames = StreamFrames(
            content_type="text/event-stream; charset=utf-8",
            headers={"request-id": request_id("req_"), "anthropic-organization-id": "org"},
            opening=self._opening(message_id, plan),
            chunks=RenderedFrames(
                plan.chunks,
                lambda chunk: _event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": chunk},
                    },
                ),
            ),
            closing=self._closing(plan, reply),
            malformed=b'event: content_block_delta\ndata: {"type": "content_block_delta", "ind\n\n',
        )
        return await self._stream(request, record, reply, frames)

    def _opening(self, message_id: str, plan: AnswerPlan) -> list[bytes]:
        # Anthropic bills cached prompt tokens apart: input_tokens excludes them.
        uncached = max(plan.input_tokens - plan.cached_input_tokens, 0)
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
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": plan.cached_input_tokens,
                "output_tokens": 1,
            },
        }
        return [
            _event("message_start", {"type": "message_start", "message": message}),
            _event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            _event("ping", {"type": "ping"}),
        ]

    def _closing(self, plan: AnswerPlan, reply: Reply) -> list[bytes]:
        if reply.content_filtered_finish:
            stop_reason = "refusal"
        else:
            stop_reason = "max_tokens" if plan.truncated_by_max_tokens else "end_turn"
        return [
            _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": plan.output_tokens},
                },
            ),
            _event("message_stop", {"type": "message_stop"}),
        ]
