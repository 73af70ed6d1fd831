"""Fake OpenAI, Anthropic and Ollama servers on local ports, with scriptable faults.

    async with FakeOpenAI() as fake:
        fake.enqueue(rate_limited(retry_after_s=2), cut_stream(after_chunks=2))
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test")
        ...
        assert fake.request_count == 2 and fake.last_request.disconnected is False

Each fake speaks its provider's wire format for tool calls (streamed, parallel, cut halfway
with `cut_stream`), images and JSON-schema answers, and refuses what the real API refuses.

Each fake records the requests it received and whether the client went away before the
response ended, so tests can assert that a cancelled call reached the upstream.
"""

from llmmesh.testing.fake_upstreams._anthropic import FakeAnthropic
from llmmesh.testing.fake_upstreams._ollama import FakeOllama
from llmmesh.testing.fake_upstreams._openai import FakeOpenAI
from llmmesh.testing.fake_upstreams._replies import (
    DEFAULT_ANSWER_CHUNKS,
    Reply,
    ToolCallScript,
    UpstreamProblem,
    cut_stream,
    hang,
    http_error,
    malformed_chunk,
    rate_limited,
    slow_first_token,
    slow_tokens,
    stream_error,
    tool_calls,
)
from llmmesh.testing.fake_upstreams._server import FakeUpstream, RecordedRequest

FAKE_KINDS: dict[str, type[FakeUpstream]] = {
    FakeOpenAI.kind: FakeOpenAI,
    FakeAnthropic.kind: FakeAnthropic,
    FakeOllama.kind: FakeOllama,
}

__all__ = [
    "DEFAULT_ANSWER_CHUNKS",
    "FAKE_KINDS",
    "FakeAnthropic",
    "FakeOllama",
    "FakeOpenAI",
    "FakeUpstream",
    "RecordedRequest",
    "Reply",
    "ToolCallScript",
    "UpstreamProblem",
    "cut_stream",
    "hang",
    "http_error",
    "malformed_chunk",
    "rate_limited",
    "slow_first_token",
    "slow_tokens",
    "stream_error",
    "tool_calls",
]
