"""OpenTelemetry set up from the standard OTEL_* variables only.

Traces and metrics go over OTLP when an endpoint is configured
(`OTEL_EXPORTER_OTLP_ENDPOINT`, or the per-signal `..._TRACES_ENDPOINT` /
`..._METRICS_ENDPOINT`), and nowhere otherwise, so a laptop without a collector stays
quiet. `OTEL_SDK_DISABLED=true` turns everything off; `OTEL_SERVICE_NAME` and
`OTEL_RESOURCE_ATTRIBUTES` name the service. Redis and httpx calls are instrumented
(Redis commands are recorded without their arguments); gRPC is traced by the mesh's own
interceptors (see `llmmesh.runtime.tracing`).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import structlog
from opentelemetry import metrics, trace

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import TracerProvider

log = structlog.get_logger(__name__)


def _exporter_wanted(signal: str) -> bool:
    if os.environ.get(f"OTEL_{signal}_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )


class Telemetry:
    """The providers of one process; `shutdown` flushes what is still buffered."""

    def __init__(self, tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def configure_telemetry(service: str, *, prometheus_port: int = 0) -> Telemetry | None:
    """Installs the SDK only for the signals that go somewhere.

    A signal with no destination keeps the API's no-op provider: spans that nobody will
    read cost CPU on every call of the hot path (measured in docs/benchmarks.md). With no
    destination at all the SDK is not even imported, which keeps about 3 MiB out of an
    idle service.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    traces_wanted = _exporter_wanted("TRACES")
    metrics_wanted = _exporter_wanted("METRICS")
    if not (traces_wanted or metrics_wanted or prometheus_port):
        return None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {"service.namespace": "llmmesh"}
    if "OTEL_SERVICE_NAME" not in os.environ:
        attributes["service.name"] = f"llmmesh-{service}"
    resource = Resource.create(attributes)
    tracer_provider = TracerProvider(resource=resource)
    if traces_wanted:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(tracer_provider)
        _instrument_libraries()
    readers: list[MetricReader] = []
    if metrics_wanted:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    if prometheus_port:
        readers.append(_prometheus_reader(prometheus_port))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    if readers:
        metrics.set_meter_provider(meter_provider)
    return Telemetry(tracer_provider, meter_provider)


def tracing_active() -> bool:
    """True when spans are recorded: an SDK tracer provider is installed."""
    # Without the SDK imported, no SDK provider can be installed.
    sdk = sys.modules.get("opentelemetry.sdk.trace")
    return sdk is not None and isinstance(trace.get_tracer_provider(), sdk.TracerProvider)


def _prometheus_reader(port: int) -> MetricReader:
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server
    except ImportError as error:
        raise RuntimeError(
            "a Prometheus port is set but opentelemetry-exporter-prometheus is not installed"
        ) from error
    start_http_server(port)
    return PrometheusMetricReader()


def _instrument_libraries() -> None:
    """Instruments the client libraries a service has installed, and skips the others."""
    try:
        from opentelemetry.instrumentation.redis import RedisInstrumentor
    except ImportError:
        pass
    else:
        RedisInstrumentor().instrument()
    try:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    except ImportError:
        pass
    else:
        HTTPXClientInstrumentor().instrument()
