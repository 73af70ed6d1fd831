"""What the router records about each request: span attributes, events and metrics.

Only names, counts, decisions and timings; prompt and answer text never.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from opentelemetry import metrics, trace
from opentelemetry.util.types import AttributeValue

from llmmesh.runtime import semconv
from llmmesh_router.breaker import BreakerState

log = structlog.get_logger(__name__)
meter = metrics.get_meter("llmmesh.router")
tracer = trace.get_tracer("llmmesh.router")

operation_duration_s = meter.create_histogram(
    semconv.GEN_AI_CLIENT_OPERATION_DURATION, unit="s", description="Whole completion time"
)
token_usage = meter.create_histogram(
    semconv.GEN_AI_CLIENT_TOKEN_USAGE, unit="{token}", description="Tokens per completion"
)
time_to_first_chunk_s = meter.create_histogram(
    semconv.GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK, unit="s", description="Time to the first text"
)
cost_usd = meter.create_counter("llmmesh.cost", unit="USD", description="Spend, from the catalog")
cache_lookups = meter.create_counter(
    "llmmesh.cache.lookups", unit="{lookup}", description="Cache lookups by outcome"
)
ratelimit_denials = meter.create_counter(
    "llmmesh.ratelimit.denials", unit="{request}", description="Requests denied by a limit"
)
circuit_state_changes = meter.create_counter(
    "llmmesh.circuit.state_changes", unit="{change}", description="Circuit breaker transitions"
)
settlements_failed = meter.create_counter(
    "llmmesh.settlements.failed",
    unit="{settlement}",
    description="Settles and releases the ratelimiter did not take within the retry budget",
)
streams_stalled = meter.create_counter(
    "llmmesh.streams.stalled",
    unit="{stream}",
    description="Streams ended because the caller stopped reading",
)
streams_in_flight = meter.create_up_down_counter(
    "llmmesh.streams.in_flight", unit="{stream}", description="Completions being streamed"
)


def annotate(attributes: Mapping[str, AttributeValue]) -> None:
    """Adds attributes to the current span."""
    trace.get_current_span().set_attributes(attributes)


def event(name: str, attributes: Mapping[str, AttributeValue]) -> None:
    trace.get_current_span().add_event(name, attributes)


def record_circuit_change(key: str, old: BreakerState, new: BreakerState) -> None:
    circuit_state_changes.add(1, {semconv.CIRCUIT: key, semconv.CIRCUIT_STATE: new.value})
    log.warning("circuit_changed", circuit=key, previous=old.value, state=new.value)
    event(
        semconv.EVENT_CIRCUIT_CHANGE,
        {semconv.CIRCUIT: key, "from": old.value, semconv.CIRCUIT_STATE: new.value},
    )
