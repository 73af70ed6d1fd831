"""structlog JSON logging, one object per line, with the active trace and span ids.

Log calls name what happened and carry ids and counts, never prompt text, answers or keys.
Exceptions are rendered as their types and frames only (see `redaction`), for our own log
calls and for the libraries' alike.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

from llmmesh.runtime.redaction import drop_exception_messages


def _add_trace_context(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event["trace_id"] = format(span_context.trace_id, "032x")
        event["span_id"] = format(span_context.span_id, "016x")
    return event


def keep_grpc_core_logs_to_errors() -> None:
    """gRPC core's own log (plain text on stderr) down to errors, unless GRPC_VERBOSITY says
    otherwise. Its INFO lines include one per failed TLS handshake, so any client could fill
    the log by connecting without a certificate. Read once, when grpc is first imported: a
    service calls this from its package's `__init__`, before anything imports grpc."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def configure_logging(service: str, level: str = "info") -> None:
    """Routes structlog and the standard library's logging to JSON lines on stderr."""
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    # Tracebacks without local variables (locals hold requests, and requests hold prompts)
    # and without exception messages (parsers quote the input that failed them).
    render_exception: list[Any] = [
        structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        ),
        drop_exception_messages,
    ]
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_context,
    ]
    structlog.configure(
        processors=[
            *shared_processors,
            structlog.processors.EventRenamer("message"),
            *render_exception,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries (grpc, httpx, redis) log through the standard library; render them alike.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared_processors,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.EventRenamer("message"),
                *render_exception,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric_level, logging.WARNING))
