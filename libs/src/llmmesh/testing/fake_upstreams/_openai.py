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
}


def _error_body(problem: UpstreamProblem) -> dict[str, Any]:
    _, error_type, code, message = _PROBLEMS[problem]
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def _sse(payload: Any) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


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
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        plan = self._plan_answer(
            reply,
            str(body.get("model", "")),
            (str(m.get("content", "")) for m in body.get("messages", [])),
            max_tokens,
        )
        completion_id = request_id("chatcmpl-")
        if not body.get("stream"):
            return json_response(400, {"error": {"message": "this fake only streams"}})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        frames = StreamFrames(
            content_type="text/event-stream; charset=utf-8",
            headers={"x-request-id": request_id("req_"), "openai-processing-ms": "12"},
            opening=[_sse(self._chunk(completion_id, plan, {"role": "assistant", "content": ""}))],
            chunks=RenderedFrames(
                plan.chunks, lambda c: _sse(self._chunk(completion_id, plan, {"content": c}))
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
                    "audio_tokens": 0,
                },
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
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
            vector = self._embedding(text)
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
