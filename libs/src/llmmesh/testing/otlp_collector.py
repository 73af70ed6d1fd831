"""A real OTLP/gRPC receiver for tests: services export to it as they would to a collector.

It keeps every span and metric it receives, decoded into plain records, and the bytes of
every export as they arrived, for tests that search everything a process sent. With a
certificate it serves TLS only (an `https://` endpoint).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from llmmesh.testing.ports import free_port
from llmmesh.traceview import SpanRecord

if TYPE_CHECKING:
    from llmmesh.local_ca import IssuedCertificate

_KINDS = {value: name.removeprefix("SPAN_KIND_") for name, value in trace_pb2.Span.SpanKind.items()}


def _value(any_value: common_pb2.AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def _attributes(pairs: Iterator[common_pb2.KeyValue] | Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


class OtlpCollector(
    trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer
):
    def __init__(self, tls: IssuedCertificate | None = None) -> None:
        self.port = free_port()
        self._tls = tls
        self.spans: list[SpanRecord] = []
        self.metric_names: set[str] = set()
        self.metric_points: list[tuple[str, dict[str, Any], Any]] = []
        self._raw_exports: list[bytes] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)  # type: ignore[no-untyped-call]
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self, self._server)  # type: ignore[no-untyped-call]
        address = f"127.0.0.1:{self.port}"
        if tls is None:
            self._server.add_insecure_port(address)
        else:
            pair = (tls.key_file.read_bytes(), tls.cert_file.read_bytes())
            self._server.add_secure_port(address, grpc.ssl_server_credentials([pair]))

    @property
    def endpoint(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def exporter_env(self) -> dict[str, str]:
        """The OTEL_* variables that point a service at this collector and export often."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "false" if self._tls else "true",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
        }

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(None)

    def __enter__(self) -> OtlpCollector:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            self._raw_exports.append(request.SerializeToString())
        if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
            self._take_spans(request)
            return trace_service_pb2.ExportTraceServiceResponse()
        self._take_metrics(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()

    def _take_spans(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        records = []
        for resource_spans in request.resource_spans:
            service = str(_attributes(resource_spans.resource.attributes).get("service.name"))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    records.append(
                        SpanRecord(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            service=service,
                            kind=_KINDS.get(span.kind, "?"),
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            attributes=_attributes(span.attributes),
                            events=tuple(event.name for event in span.events),
                            error=span.status.code == trace_pb2.Status.STATUS_CODE_ERROR,
                        )
                    )
        with self._lock:
            self.spans.extend(records)

    def _take_metrics(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        with self._lock:
            for resource_metrics in request.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        self.metric_names.add(metric.name)
                        data = getattr(metric, str(metric.WhichOneof("data")))
                        for point in data.data_points:
                            self.metric_points.append(
                                (metric.name, _attributes(point.attributes), point)
                            )

    def exported_bytes(self) -> bytes:
        """Every export request received so far (spans and metrics), serialized, joined."""
        with self._lock:
            return b"\n".join(self._raw_exports)

    def trace(self, trace_id: str) -> list[SpanRecord]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(
        self, predicate: Any, timeout_s: float = 15.0, poll_s: float = 0.1
    ) -> list[SpanRecord]:
        """Waits until `predicate(spans)` holds; returns the spans then."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                spans = list(self.spans)
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                raise TimeoutError(f"collector condition not met; {len(spans)} spans received")
            time.sleep(poll_s)
