"""A per-hop latency view of one trace, for the terminal.

Spans come from Jaeger's query API (`llmmesh trace <id>`) or from the test kit's OTLP
collector; either way they are rendered as an indented tree with each span's service,
duration and offset from the start of the trace, so the slow hop stands out.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class SpanRecord:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    service: str
    kind: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    events: tuple[str, ...] = ()
    error: bool = False

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def render_tree(spans: Iterable[SpanRecord]) -> str:
    """The spans as an indented tree, children in start order."""
    spans = sorted(spans, key=lambda s: s.start_ns)
    if not spans:
        return "no spans"
    known = {s.span_id for s in spans}
    children: dict[str, list[SpanRecord]] = {}
    roots = []
    for span in spans:
        if span.parent_span_id and span.parent_span_id in known:
            children.setdefault(span.parent_span_id, []).append(span)
        else:
            roots.append(span)
    trace_start = spans[0].start_ns
    lines = [f"{'offset ms':>10} {'duration ms':>12}  span"]

    def walk(span: SpanRecord, depth: int) -> None:
        marks = " !" if span.error else ""
        events = f" [{', '.join(span.events)}]" if span.events else ""
        lines.append(
            f"{(span.start_ns - trace_start) / 1e6:>10.2f} {span.duration_ms:>12.2f}  "
            f"{'  ' * depth}{span.service}: {span.name}{marks}{events}"
        )
        for child in children.get(span.span_id, []):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return "\n".join(lines)


def fetch_from_jaeger(base_url: str, trace_id: str, timeout_s: float = 10.0) -> list[SpanRecord]:
    """The trace's spans from Jaeger's HTTP query API (`/api/traces/<id>`)."""
    url = f"{base_url.rstrip('/')}/api/traces/{trace_id}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            document = json.load(response)
    except urllib.error.HTTPError as error:
        error.close()
        raise OSError(f"Jaeger answered HTTP {error.code}") from None
    return spans_from_jaeger(document)


def spans_from_jaeger(document: Mapping[str, Any]) -> list[SpanRecord]:
    records = []
    for trace in document.get("data", []):
        services = {pid: p["serviceName"] for pid, p in trace.get("processes", {}).items()}
        for span in trace.get("spans", []):
            tags = {t["key"]: t["value"] for t in span.get("tags", [])}
            parents = [
                r["spanID"] for r in span.get("references", []) if r["refType"] == "CHILD_OF"
            ]
            start_ns = int(span["startTime"]) * 1000
            records.append(
                SpanRecord(
                    trace_id=span["traceID"],
                    span_id=span["spanID"],
                    parent_span_id=parents[0] if parents else "",
                    name=span["operationName"],
                    service=services.get(span.get("processID", ""), "?"),
                    kind=str(tags.get("span.kind", "")),
                    start_ns=start_ns,
                    end_ns=start_ns + int(span["duration"]) * 1000,
                    attributes=tags,
                    events=tuple(
                        str(field["value"])
                        for log in span.get("logs", [])
                        for field in log.get("fields", [])
                        if field["key"] == "event"
                    ),
                    error=bool(tags.get("error", False)),
                )
            )
    return records
