"""`llmmesh trace <id>` reads a trace from Jaeger's query API and shows time per hop."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from llmmesh.cli import app
from llmmesh.traceview import SpanRecord, render_tree, spans_from_jaeger

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def _jaeger_span(
    span_id: str, name: str, process: str, start_us: int, duration_us: int, **extra: object
) -> dict[str, object]:
    return {
        "traceID": TRACE_ID, "spanID": span_id, "operationName": name, "processID": process,
        "startTime": start_us, "duration": duration_us, "references": [], "tags": [],
        "logs": [], **extra,
    }  # fmt: skip


JAEGER_DOCUMENT = {
    "data": [
        {
            "traceID": TRACE_ID,
            "processes": {
                "p1": {"serviceName": "llmmesh-router"},
                "p2": {"serviceName": "llmmesh-provider"},
            },
            "spans": [
                _jaeger_span("a1", "RouterService/StreamComplete", "p1", 1_000_000, 40_000),
                _jaeger_span(
                    "b2", "ProviderService/Generate", "p2", 1_002_000, 35_000,
                    references=[{"refType": "CHILD_OF", "traceID": TRACE_ID, "spanID": "a1"}],
                    tags=[{"key": "error", "value": True}],
                    logs=[{"timestamp": 1_003_000,
                           "fields": [{"key": "event", "value": "llmmesh.retry"}]}],
                ),
            ],
        }
    ]
}  # fmt: skip


def test_jaeger_spans_render_as_a_tree_with_offsets_durations_and_events() -> None:
    lines = render_tree(spans_from_jaeger(JAEGER_DOCUMENT)).splitlines()
    assert lines[1].split() == ["0.00", "40.00", "llmmesh-router:", "RouterService/StreamComplete"]
    assert lines[2].split()[:4] == [
        "2.00",
        "35.00",
        "llmmesh-provider:",
        "ProviderService/Generate",
    ]
    assert lines[2].endswith("! [llmmesh.retry]")
    assert lines[2].index("llmmesh-provider") > lines[1].index("llmmesh-router")


def test_span_whose_parent_is_missing_is_shown_as_a_root() -> None:
    orphan = SpanRecord("t", "s2", "missing", "child", "svc", "SERVER", 5, 10)
    assert "svc: child" in render_tree([orphan])


class _Jaeger(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        found = self.path == f"/api/traces/{TRACE_ID}"
        body = json.dumps(JAEGER_DOCUMENT if found else {"data": []}).encode()
        self.send_response(200 if found else 404)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def jaeger_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Jaeger)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_trace_command_prints_the_hops_of_a_trace(jaeger_url: str) -> None:
    result = CliRunner().invoke(app, ["trace", TRACE_ID, "--jaeger", jaeger_url])
    assert result.exit_code == 0, result.output
    assert "llmmesh-provider: ProviderService/Generate" in result.output


def test_trace_command_explains_an_unknown_trace(jaeger_url: str) -> None:
    result = CliRunner().invoke(app, ["trace", "0" * 32, "--jaeger", jaeger_url])
    assert result.exit_code == 1
    assert "cannot read trace" in result.output
