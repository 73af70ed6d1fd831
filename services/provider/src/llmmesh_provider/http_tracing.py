"""An HTTP CLIENT span, and the trace context in its headers, for every upstream request.

The openai and anthropic SDKs speak through httpx2, which opentelemetry-instrumentation-httpx
does not cover (it patches httpx), and no instrumentation for httpx2 exists; so the SDK
clients get this transport, which does what that instrumentation does for httpx: one span
per request, named by its method, ended when the response headers arrive, and a
`traceparent` header so the upstream can join the trace. Only method, host, port, path and
status are recorded: never headers (they carry the key) or bodies (they carry the prompt).
"""

from __future__ import annotations

import functools
import ssl

import httpx2
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from llmmesh.runtime import semconv
from llmmesh_provider.backends import UPSTREAM_SOCKET_OPTIONS

tracer = trace.get_tracer("llmmesh.provider.http")

# The SDKs' own defaults for their connection pools.
CONNECTION_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """One TLS context for every upstream client: each would otherwise load the CA bundle
    into its own (about 1.6 MiB per SDK client)."""
    return httpx2.create_ssl_context()


class TracedTransport(httpx2.AsyncBaseTransport):
    def __init__(self, inner: httpx2.AsyncBaseTransport | None = None) -> None:
        self._inner = inner or httpx2.AsyncHTTPTransport(
            limits=CONNECTION_LIMITS,
            verify=shared_tls_context(),
            socket_options=UPSTREAM_SOCKET_OPTIONS,
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        with tracer.start_as_current_span(
            request.method,
            kind=SpanKind.CLIENT,
            attributes={
                semconv.HTTP_REQUEST_METHOD: request.method,
                semconv.SERVER_ADDRESS: url.host,
                semconv.SERVER_PORT: url.port or (443 if url.scheme == "https" else 80),
                semconv.URL_PATH: url.path,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            request.headers.update(carrier)
            try:
                response = await self._inner.handle_async_request(request)
            except httpx2.TransportError as error:
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                span.set_attribute(semconv.ERROR_TYPE, type(error).__name__)
                raise
            span.set_attribute(semconv.HTTP_RESPONSE_STATUS_CODE, response.status_code)
            if response.status_code >= 400:
                span.set_status(Status(StatusCode.ERROR, str(response.status_code)))
                span.set_attribute(semconv.ERROR_TYPE, str(response.status_code))
            return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def traced_http_client() -> httpx2.AsyncClient:
    """An httpx2 client for an SDK; the SDK still sets its own timeouts per request."""
    return httpx2.AsyncClient(transport=TracedTransport(), follow_redirects=True)
