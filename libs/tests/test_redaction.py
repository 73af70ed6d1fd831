"""An exception's message never reaches a log line or a span: a parser's message quotes its
input, and the input is a prompt. Types and stacks do, so a crash can still be found."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmmesh.runtime.redaction import exception_type, traceback_without_messages
from llmmesh.testing.intercepted import intercepted_server
from llmmesh.testing.spans import span_exporter

MARKER = "prompt-marker-4711"


def _parse_dose(text: str) -> int:
    return int(text)


def _crash_with_a_cause() -> None:
    try:
        _parse_dose(f"{MARKER} mg")
    except ValueError as error:
        raise KeyError(f"no dose in {MARKER}") from error


def test_traceback_names_types_and_frames_of_the_whole_chain_but_no_message() -> None:
    with pytest.raises(KeyError) as caught:
        _crash_with_a_cause()
    text = traceback_without_messages(caught.value)
    assert MARKER not in text
    assert text.index("ValueError") < text.index("KeyError")  # the cause first, as Python does
    assert "_parse_dose" in text
    assert "_crash_with_a_cause" in text


def test_exception_type_is_qualified_outside_the_builtins() -> None:
    assert exception_type(ValueError()) == "ValueError"
    assert exception_type(json.JSONDecodeError("x", "", 0)) == "json.decoder.JSONDecodeError"


LOGGING_SCRIPT = textwrap.dedent(
    f"""
    import asyncio, logging
    import structlog
    from llmmesh.runtime.logging import configure_logging
    from llmmesh.runtime.redaction import log_loop_exception

    configure_logging("test")
    log = structlog.get_logger()
    try:
        int("{MARKER}")
    except ValueError as error:
        log.error("ours", exc_info=error)
        log.exception("ours_too")
        logging.getLogger("somelibrary").exception("theirs: %s", "fixed text")

    async def fails(prompt):
        raise ValueError(prompt)

    async def main():
        asyncio.get_running_loop().set_exception_handler(log_loop_exception)
        task = asyncio.ensure_future(fails("{MARKER}"))
        await asyncio.sleep(0.01)
        del task  # its exception is never retrieved: the loop reports it

    asyncio.run(main())
    import gc; gc.collect()
    """
)


def test_log_lines_carry_exception_types_and_frames_but_no_message() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LOGGING_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line["message"] for line in lines] == [
        "ours",
        "ours_too",
        "theirs: fixed text",
        "event_loop_error",
    ]
    for line in lines:
        assert line["exception"][0]["exc_type"] == "ValueError"
        assert line["exception"][0]["frames"]
    assert MARKER not in result.stderr


async def _crash(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    _parse_dose(request.decode())
    return b""


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    span_exporter()  # spans are recorded from here on
    handlers = {"Crash": grpc.unary_unary_rpc_method_handler(_crash)}
    async with intercepted_server(handlers) as client:
        yield client


async def test_a_crash_in_a_handler_is_on_its_span_by_type_and_stack_only(
    channel: grpc.aio.Channel,
) -> None:
    spans: InMemorySpanExporter = span_exporter()
    spans.clear()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/t.T/Crash")(MARKER.encode())
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert MARKER not in (caught.value.details() or "")
    [span] = [s for s in spans.get_finished_spans() if s.name == "t.T/Crash"]
    [event] = [e for e in span.events if e.name == "exception"]
    attributes = dict(event.attributes or {})
    assert attributes["exception.type"] == "ValueError"
    assert "_parse_dose" in str(attributes["exception.stacktrace"])
    assert "exception.message" not in attributes
    assert MARKER not in repr(span.to_json())
