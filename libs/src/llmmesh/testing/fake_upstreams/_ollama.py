"""A fake Ollama server: `/api/chat` as NDJSON lines and `/api/embed`, wire-accurate."""

from __future__ import annotations

import datetime
import json
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
)

_PROBLEMS: dict[UpstreamProblem, tuple[int, str]] = {
    # problem: (status, error) as an Ollama server (or a proxy in front of it) sends them
    UpstreamProblem.RATE_LIMITED: (429, "too many requests"),
    UpstreamProblem.SERVER_ERROR: (500, "llama runner process has terminated: exit status 2"),
    UpstreamProblem.BAD_GATEWAY: (502, "bad gateway"),
    UpstreamProblem.SERVICE_UNAVAILABLE: (
        503,
        "server busy, please try again.  maximum pending requests exceeded",
    ),
    UpstreamProblem.GATEWAY_TIMEOUT: (504, "gateway timeout"),
    UpstreamProblem.OVERLOADED: (
        503,
        "server busy, please try again.  maximum pending requests exceeded",
    ),
    UpstreamProblem.CONTEXT_LENGTH_EXCEEDED: (400, "the input length exceeds the context length"),
    UpstreamProblem.CONTENT_FILTERED: (400, "content filtered by policy"),
    UpstreamProblem.BAD_REQUEST: (400, "invalid options: temperature"),
    UpstreamProblem.UNAUTHORIZED: (401, "unauthorized"),
    UpstreamProblem.FORBIDDEN: (403, "forbidden"),
    UpstreamProblem.MODEL_NOT_FOUND: (404, 'model "unknown" not found, try pulling it first'),
}


def _line(payload: Any) -> bytes:
    return json.dumps(payload).encode() + b"\n"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


class FakeOllama(FakeUpstream):
    """Speaks Ollama's native HTTP API."""

    kind = "ollama"

    @property
    def base_url(self) -> str:
        return self.origin

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/chat", self._chat)
        app.router.add_post("/api/embed", self._embed)

    def _error_response(self, problem: UpstreamProblem, reply: Reply) -> web.Response:
        status, message = _PROBLEMS[problem]
        headers = {}
        if problem is UpstreamProblem.RATE_LIMITED and reply.retry_after_s is not None:
            headers["retry-after"] = str(int(reply.retry_after_s))
        return json_response(status, {"error": message}, headers)

    def _problem_frame(self, problem: UpstreamProblem) -> bytes:
        return _line({"error": _PROBLEMS[problem][1]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._exchange(request, self._answer_chat)

    async def _answer_chat(
        self, request: web.Request, record: RecordedRequest, reply: Reply
    ) -> web.StreamResponse:
        body = record.body if isinstance(record.body, dict) else {}
        options = body.get("options") or {}
        plan = self._plan_answer(
            reply,
            str(body.get("model", "")),
            (str(m.get("content", "")) for m in body.get("messages", [])),
            options.get("num_predict"),
        )
        if body.get("stream") is False:
            return json_response(400, {"error": "this fake only streams"})
        frames = StreamFrames(
            content_type="application/x-ndjson",
            headers={},
            opening=[],
            chunks=RenderedFrames(plan.chunks, lambda chunk: _line(self._message(plan, chunk))),
            closing=[_line(self._final(plan))],
            malformed=b'{"model": "' + plan.model.encode() + b'", "message": {"role"\n',
        )
        return await self._stream(request, record, reply, frames)

    def _message(self, plan: AnswerPlan, content: str) -> dict[str, Any]:
        return {
            "model": plan.model,
            "created_at": _now(),
            "message": {"role": "assistant", "content": content},
            "done": False,
        }

    def _final(self, plan: AnswerPlan) -> dict[str, Any]:
        return {
            **self._message(plan, ""),
            "done": True,
            "done_reason": "length" if plan.truncated_by_max_tokens else "stop",
            "total_duration": 5_043_500_667,
            "load_duration": 5_025_959,
            "prompt_eval_count": plan.input_tokens,
            "prompt_eval_duration": 325_953_000,
            "eval_count": plan.output_tokens,
            "eval_duration": 4_709_213_000,
        }

    async def _embed(self, request: web.Request) -> web.StreamResponse:
        return await self._exchange(request, self._answer_embed)

    async def _answer_embed(
        self, request: web.Request, record: RecordedRequest, reply: Reply
    ) -> web.StreamResponse:
        body = record.body if isinstance(record.body, dict) else {}
        inputs = body.get("input", [])
        texts = [inputs] if isinstance(inputs, str) else [str(text) for text in inputs]
        return json_response(
            200,
            {
                "model": reply.response_model or body.get("model", ""),
                "embeddings": [self._embedding(text) for text in texts],
                "total_duration": 14_143_917,
                "load_duration": 1_019_500,
                "prompt_eval_count": sum(len(text.split()) for text in texts),
            },
        )
