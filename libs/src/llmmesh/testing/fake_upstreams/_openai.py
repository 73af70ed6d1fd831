"""A fake OpenAI API: `/v1/chat/completions` as SSE chunks and `/v1/embeddings`, wire-accurate."""

from __future__ import annotations

import base64
import json
import struct
import time
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

_PROBLEMS: dict[UpstreamProblem, tuple[int, str | None, str | None, str]] = {
    # problem: (status, type, code, message) as the OpenAI API (or Azure OpenAI) sends them
    UpstreamProblem.RATE_LIMITED: (
        429,
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests per min (RPM): Limit 500, Used 500, Requested 1.",
    ),
    UpstreamProblem.SERVER_ERROR: (
        500,
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    UpstreamProblem.BAD_GATEWAY: (502, "server_error", None, "Bad gateway."),
    UpstreamProblem.SERVICE_UNAVAILABLE: (
        503,
        "server_error",
        None,
        "The engine is currently overloaded, please try again later.",
    ),
    UpstreamProblem.GATEWAY_TIMEOUT: (504, "server_error", None, "Gateway timeout."),
    UpstreamProblem.OVERLOADED: (
        503,
        "server_error",
        None,
        "The engine is currently overloaded, please try again later.",
    ),
    UpstreamProblem.CONTEXT_LENGTH_EXCEEDED: (
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 130412 tokens. Please reduce the length of the messages.",
    ),
    UpstreamProblem.CONTENT_FILTERED: (
        400,
        "invalid_request_error",
        "content_filter",
        "The response was filtered due to the prompt triggering content management "
        "policy. Please modify your prompt and retry.",
    ),
    UpstreamProblem.BAD_REQUEST: (
        400,
        "invalid_request_error",
        None,
        "Invalid value for 'temperature': must be between 0 and 2.",
    ),
    UpstreamProblem.UNAUTHORIZED: (
        401,
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided: sk-fake***********. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    UpstreamProblem.FORBIDDEN: (
        403,
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    UpstreamProblem.MODEL_NOT_FOUND: (
        404,
        "invalid_request_error",
        "model_not_found",
        "The model `unknown` does not exist or you do not have access to it.",
    ),
    UpstreamProblem.TOOLS_UNSUPPORTED: (
        400,
        "invalid_request_error",
        "unsupported_parameter",
        "Unsupported parameter: 'tools' is not supported with this model.",
    ),
    UpstreamProblem.IMAGES_UNSUPPORTED: (
        400,
        "invalid_request_error",
        None,
        "Invalid content type. image_url is only supported by certain models.",
    ),
    UpstreamProblem.SCHEMA_UNSUPPORTED: (
        400,
        "invalid_request_error",
        None,
        "Invalid parameter: 'response_format' of type 'json_schema' is not supported with "
        "this model.",
    ),
}
# The request field each error blames, as the API names it.
_PARAMS = {
    UpstreamProblem.TOOLS_UNSUPPORTED: "tools",
    UpstreamProblem.IMAGES_UNSUPPORTED: "messages.[0].content.[1].type",
    UpstreamProblem.SCHEMA_UNSUPPORTED: "response_format",
}


def _error_body(problem: UpstreamProblem) -> dict[str, Any]:
    _, error_type, code, message = _PROBLEMS[problem]
    param = _PARAMS.get(problem)
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _invalid(message: str, param: str) -> web.Response:
    """The API's 400 for a request it cannot parse, so a client's mapping bug shows."""
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    return json_response(400, {"error": error})


def _texts_and_images(content: Any) -> tuple[list[str], int]:
    if isinstance(content, str):
        return [content], 0
    texts = [str(p.get("text", "")) for p in content or () if p.get("type") == "text"]
    images = sum(1 for p in content or () if p.get("type") == "image_url")
    return texts, images


def _request_problem(body: dict[str, Any]) -> web.Response | None:
    """What the real API would refuse in the messages and tools, if anything."""
    call_ids: set[str] = set()
    for index, message in enumerate(body.get("messages", [])):
        role = message.get("role")
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            if call.get("type") != "function" or not isinstance(function.get("arguments"), str):
                return _invalid("Invalid tool call.", f"messages.[{index}].tool_calls")
            call_ids.add(call.get("id"))
        if role == "tool" and message.get("tool_call_id") not in call_ids:
            return _invalid(
                "Invalid parameter: messages with role 'tool' must be a response to a "
                "preceeding message with 'tool_calls'.",
                f"messages.[{index}].role",
            )
        content = message.get("content")
        for part_index, part in enumerate(content if isinstance(content, list) else ()):
            url = (part.get("image_url") or {}).get("url", "")
            if part.get("type") == "image_url" and not url.startswith(
                ("http://", "https://", "data:image/")
            ):
                return _invalid(
                    "Invalid image URL.", f"messages.[{index}].content.[{part_index}].image_url"
                )
    for index, tool in enumerate(body.get("tools") or ()):
        if tool.get("type") != "function" or not (tool.get("function") or {}).get("name"):
            return _invalid("Missing required parameter.", f"tools.[{index}].function")
    return None


def _requested_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    form = body.get("response_format") or {}
    if form.get("type") == "json_schema":
        schema = (form.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else {}
    if form.get("type") == "json_object":
        return {"type": "object"}
    return None


def _sse(payload: Any) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _reasoning_deltas(plan: AnswerPlan) -> list[dict[str, Any]]:
    """Reasoning as OpenAI-compatible servers stream it, ahead of the text."""
    return [{"reasoning_content": r} for r in plan.reasoning]


def _tool_call_deltas(plan: AnswerPlan) -> list[dict[str, Any]]:
    """After the text, each call's first frame (id, name, empty arguments) and its argument
    pieces."""
    deltas: list[dict[str, Any]] = []
    for call in plan.tool_calls:
        first = {"name": call.name, "arguments": ""}
        deltas.append(
            {
                "tool_calls": [
                    {"index": call.index, "id": call.id, "type": "function", "function": first}
                ]
            }
        )
        deltas += [
            {"tool_calls": [{"index": call.index, "function": {"arguments": piece}}]}
            for piece in call.pieces
        ]
    return deltas


class FakeOpenAI(FakeUpstream):
    """Speaks the OpenAI API as the `openai` SDK sees it; `base_url` ends in `/v1`."""

    kind = "openai"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/v1/embeddings", self._embeddings)

    def _error_response(self, problem: UpstreamProblem, reply: Reply) -> web.Response:
        status = _PROBLEMS[problem][0]
        headers = {"x-request-id": "req_error"}
        if problem is UpstreamProblem.RATE_LIMITED:
            headers.update(retry_after_headers(reply))
        return json_response(status, _error_body(problem), headers)

    def _problem_frame(self, problem: UpstreamProblem) -> bytes:
        return _sse(_error_body(problem))

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._exchange(request, self._answer_chat)

    async def _answer_chat(
        self, request: web.Request, record: RecordedRequest, reply: Reply
    ) -> web.StreamResponse:
        body = record.body if isinstance(record.body, dict) else {}
        problem = _request_problem(body)
        if problem is not None:
            return problem
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        texts: list[str] = []
        images = 0
        for message in body.get("messages", []):
            message_texts, message_images = _texts_and_images(message.get("content"))
            texts += message_texts
            images += message_images
        plan = self._plan_answer(
            reply,
            str(body.get("model", "")),
            texts,
            max_tokens,
            schema=_requested_schema(body),
            images=images,
        )
        completion_id = request_id("chatcmpl-")
        if not body.get("stream"):
            return json_response(400, {"error": {"message": "this fake only streams"}})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        # The API opens a tool-call-only answer with no content at all.
        opening = {"role": "assistant", "content": "" if plan.chunks else None}
        frames = StreamFrames(
            content_type="text/event-stream; charset=utf-8",
            headers={"x-request-id": request_id("req_"), "openai-processing-ms": "12"},
            opening=[_sse(self._chunk(completion_id, plan, opening))],
            chunks=ChainedFrames(
                [_sse(self._chunk(completion_id, plan, d)) for d in _reasoning_deltas(plan)],
                RenderedFrames(
                    plan.chunks, lambda c: _sse(self._chunk(completion_id, plan, {"content": c}))
                ),
                [_sse(self._chunk(completion_id, plan, d)) for d in _tool_call_deltas(plan)],
            ),
            closing=self._closing(completion_id, plan, reply, include_usage),
            malformed=b'data: {"id": "' + completion_id.encode() + b'", "choices": [{"delta\n\n',
        )
        return await self._stream(request, record, reply, frames)

    def _chunk(
        self,
        completion_id: str,
        plan: AnswerPlan,
        delta: dict[str, Any],
        finish_reason: str | None = None,
    ) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": plan.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": None,
        }

    def _closing(
        self, completion_id: str, plan: AnswerPlan, reply: Reply, include_usage: bool
    ) -> list[bytes]:
        if reply.content_filtered_finish:
            finish = "content_filter"
        elif plan.tool_calls:
            finish = "tool_calls"
        else:
            finish = "length" if plan.truncated_by_max_tokens else "stop"
        frames = [_sse(self._chunk(completion_id, plan, {}, finish))]
        if include_usage:
            usage_chunk = self._chunk(completion_id, plan, {})
            usage_chunk["choices"] = []
            usage_chunk["usage"] = {
                "prompt_tokens": plan.input_tokens,
                "completion_tokens": plan.output_tokens,
                "total_tokens": plan.input_tokens + plan.output_tokens,
                "prompt_tokens_details": {
                    "cached_tokens": plan.cached_input_tokens,
                    "cache_write_tokens": plan.cache_write_input_tokens,
                    "audio_tokens": 0,
                },
                "completion_tokens_details": {
                    "reasoning_tokens": plan.reasoning_tokens,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            }
            frames.append(_sse(usage_chunk))
        frames.append(b"data: [DONE]\n\n")
        return frames

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._exchange(request, self._answer_embeddings)

    async def _answer_embeddings(
        self, request: web.Request, record: RecordedRequest, reply: Reply
    ) -> web.StreamResponse:
        body = record.body if isinstance(record.body, dict) else {}
        inputs = body.get("input", [])
        texts = [inputs] if isinstance(inputs, str) else [str(text) for text in inputs]
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = self._embedding(text, body.get("dimensions"))
            encoded: Any = (
                base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(text.split()) for text in texts)
        return json_response(
            200,
            {
                "object": "list",
                "data": data,
                "model": reply.response_model or body.get("model", ""),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            {"x-request-id": request_id("req_")},
        )
