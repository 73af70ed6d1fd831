"""Runs a request down its model chain: retries, fallbacks and circuit breakers.

Before the first token, a failure is invisible to the caller: a retryable error is retried
on the same model with backoff (never past the deadline, never past an opened circuit),
then the chain moves on; an upstream timeout moves on at once; a context-length error
moves to a model with a larger window. A failure of the mesh's own provider process is
retried at once on another replica and never counts against the upstream's circuit.
After the first token there is no going back: the stream ends with STREAM_INTERRUPTED
saying how much was delivered, so an answer is never silently truncated or spliced from
two models.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import grpc
import grpc.aio
import structlog
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from llmmesh.common.v1 import chat_pb2
from llmmesh.provider.v1 import provider_pb2, provider_service_pb2, provider_service_pb2_grpc
from llmmesh.runtime import semconv
from llmmesh.runtime.errors import RpcFailure
from llmmesh_router import observability
from llmmesh_router.backoff import BackoffPolicy
from llmmesh_router.breaker import BreakerRegistry, CircuitBreaker, ProbeClaims
from llmmesh_router.deadline import Deadline
from llmmesh_router.peers import peer_failure
from llmmesh_router.policy import CatalogModel, RouterPolicy
from llmmesh_router.routing import larger_window_models
from llmmesh_router.tokens import estimate_text_tokens

log = structlog.get_logger(__name__)

RETRYABLE_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}
CONTEXT_LENGTH_EXCEEDED = "CONTEXT_LENGTH_EXCEEDED"
CREDENTIALS_REJECTED = "UPSTREAM_CREDENTIALS_REJECTED"
UPSTREAM_TIMEOUT = "UPSTREAM_TIMEOUT"
# What the router's provider channel reports when no provider process answered with a
# status of its own: it crashed, was unreachable, or dropped the call while stopping.
PROVIDER_REPLICA_REASONS = frozenset(
    {"PROVIDER_UNAVAILABLE", "PROVIDER_CANCELLED", "PROVIDER_INTERNAL", "PROVIDER_UNKNOWN"}
)
# Immediate retries on another provider replica, per request, on top of the model's attempts.
MAX_PROVIDER_REPLICA_RETRIES = 3
# An upstream timeout with less than this left of the caller's deadline was the caller's.
CALLER_DEADLINE_SLACK_S = 0.2


@dataclasses.dataclass(frozen=True)
class Delta:
    text: str


@dataclasses.dataclass(frozen=True)
class Finished:
    model: CatalogModel
    summary: provider_pb2.GenerationSummary
    attempts: int


GenerationEvent = Delta | Finished


@dataclasses.dataclass
class AttemptLog:
    """What happened to each attempt, for the final error and for traces."""

    attempts: int = 0
    # Calls repeated because a provider replica, not the upstream, failed.
    replica_retries: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)
    shortest_retry_after_s: float | None = None

    def failed(self, model: CatalogModel, failure: RpcFailure) -> None:
        self.failures.append(f"{model.name}:{failure.reason}")
        if failure.retry_after_s is not None:
            self.shortest_retry_after_s = min(
                failure.retry_after_s, self.shortest_retry_after_s or failure.retry_after_s
            )


class AllModelsFailed(RpcFailure):
    """Every model of the chain failed or was unavailable before any text was sent."""

    def __init__(self, attempt_log: AttemptLog, skipped: list[str]) -> None:
        tried = ", ".join(attempt_log.failures) or "none"
        super().__init__(
            grpc.StatusCode.UNAVAILABLE,
            f"no model could answer; attempts: {tried}"
            + (f"; skipped (circuit open): {', '.join(skipped)}" if skipped else ""),
            reason="NO_MODEL_AVAILABLE",
            metadata={"attempts": str(attempt_log.attempts), "failures": tried},
            retry_after_s=attempt_log.shortest_retry_after_s,
        )


class ChainRunner:
    def __init__(
        self,
        provider: provider_service_pb2_grpc.ProviderServiceStub,
        breakers: BreakerRegistry,
        policy_source: Callable[[], RouterPolicy],
        rng: random.Random | None = None,
        probe_claims: ProbeClaims | None = None,
    ) -> None:
        self._provider = provider
        self._breakers = breakers
        self._probe_claims = probe_claims
        self._policy_source = policy_source
        self._rng = rng or random.Random()

    async def run(
        self,
        chain: tuple[CatalogModel, ...],
        messages: list[chat_pb2.ChatMessage],
        parameters: chat_pb2.GenerationParameters,
        deadline: Deadline,
    ) -> AsyncGenerator[GenerationEvent, None]:
        policy = self._policy_source()
        retry = policy.routing.retry
        backoff = BackoffPolicy(retry.backoff_base_s, retry.backoff_cap_s)
        attempt_log = AttemptLog()
        pending = list(chain)
        tried: set[str] = set()
        skipped: list[str] = []
        while pending and deadline.remaining_s() > 0:
            model = pending.pop(0)
            tried.add(model.name)
            breaker = self._breakers.get(model.provider, model.upstream_model)
            failures = 0
            while True:
                if not await self._may_call(breaker):
                    skipped.append(model.name)
                    break
                attempt_log.attempts += 1
                delivered: list[str] = []
                try:
                    async for event in self._attempt(
                        model, messages, parameters, deadline, delivered
                    ):
                        if isinstance(event, Finished):
                            yield dataclasses.replace(event, attempts=attempt_log.attempts)
                        else:
                            yield event
                    breaker.record_success()
                    return
                except RpcFailure as failure:
                    kind = classify_failure(failure, deadline)
                    if kind is FailureKind.COUNTED or kind is FailureKind.UPSTREAM_TIMEOUT:
                        breaker.record_failure()
                    else:
                        # No verdict on the upstream: a later call may probe it.
                        breaker.release_probe()
                    if delivered:
                        raise interrupted_failure(failure, delivered) from failure
                    attempt_log.failed(model, failure)
                    if failure.reason == CONTEXT_LENGTH_EXCEEDED:
                        # The chain's own larger models first, then the catalog's.
                        pending = [
                            m for m in pending if m.context_window > model.context_window
                        ] or larger_window_models(policy, model, tried)
                        _note(semconv.EVENT_FALLBACK, model, failure)
                        break
                    if kind is FailureKind.CALLER or kind is FailureKind.CALLER_DEADLINE:
                        raise
                    if kind is FailureKind.PROVIDER_REPLICA:
                        if not await self._retry_on_another_replica(
                            model, failure, attempt_log, backoff, deadline
                        ):
                            raise AllModelsFailed(attempt_log, skipped) from failure
                        continue
                    failures += 1
                    if not await self._retry_same_model(
                        model, breaker, failure, failures, backoff, deadline,
                        timed_out=kind is FailureKind.UPSTREAM_TIMEOUT, last_model=not pending,
                    ):  # fmt: skip
                        break
                except asyncio.CancelledError:
                    breaker.release_probe()
                    raise
        raise AllModelsFailed(attempt_log, skipped)

    async def _retry_on_another_replica(
        self,
        model: CatalogModel,
        failure: RpcFailure,
        attempt_log: AttemptLog,
        backoff: BackoffPolicy,
        deadline: Deadline,
    ) -> bool:
        """True to call the same model again: the channel round-robins over the provider's
        replicas, so the next call reaches another one. The first retry goes at once."""
        attempt_log.replica_retries += 1
        retries = attempt_log.replica_retries
        delay_s = 0.0 if retries == 1 else backoff.delay_s(retries - 1, self._rng, None)
        if retries > MAX_PROVIDER_REPLICA_RETRIES or delay_s >= deadline.remaining_s():
            return False
        _note(semconv.EVENT_RETRY, model, failure, delay_s=delay_s)
        await asyncio.sleep(delay_s)
        return True

    async def _retry_same_model(
        self,
        model: CatalogModel,
        breaker: CircuitBreaker,
        failure: RpcFailure,
        failures: int,
        backoff: BackoffPolicy,
        deadline: Deadline,
        *,
        timed_out: bool,
        last_model: bool,
    ) -> bool:
        """Waits out the backoff and returns True to retry, or False to move down the chain.

        A timeout has already cost the instance's whole timeout, so it moves on to the next
        model at once and is retried only on the last one. Never sleeps past an opened
        circuit: an open one (or one that opens during the wait, from this caller's
        failures or anyone else's) sends the caller on at once.
        """
        retry = self._policy_source().routing.retry
        retryable = last_model if timed_out else failure.code in RETRYABLE_CODES
        if (
            not retryable
            or failure.reason == CREDENTIALS_REJECTED
            or failures >= retry.max_attempts_per_model
            or breaker.is_open()
        ):
            _note(semconv.EVENT_FALLBACK, model, failure)
            return False
        delay_s = backoff.delay_s(failures, self._rng, failure.retry_after_s)
        if delay_s >= deadline.remaining_s():
            _note(semconv.EVENT_FALLBACK, model, failure)
            return False
        _note(semconv.EVENT_RETRY, model, failure, delay_s=delay_s)
        if await breaker.wait_opened(delay_s):
            _note(semconv.EVENT_FALLBACK, model, failure)
            return False
        return True

    async def _may_call(self, breaker: CircuitBreaker) -> bool:
        if not breaker.allows_request():
            return False
        # Half-open: one probe for the whole mesh, not one per replica.
        claims = self._probe_claims
        if breaker.probing and claims is not None and not await claims.claim_probe(breaker.key):
            breaker.release_probe()
            return False
        return True

    async def _attempt(
        self,
        model: CatalogModel,
        messages: list[chat_pb2.ChatMessage],
        parameters: chat_pb2.GenerationParameters,
        deadline: Deadline,
        delivered: list[str],
    ) -> AsyncIterator[GenerationEvent]:
        started = time.monotonic()
        with observability.tracer.start_as_current_span(
            f"chat {model.upstream_model}",
            attributes={
                semconv.GEN_AI_OPERATION_NAME: "chat",
                semconv.GEN_AI_PROVIDER_NAME: model.provider,
                semconv.GEN_AI_REQUEST_MODEL: model.upstream_model,
                semconv.GEN_AI_REQUEST_MAX_TOKENS: parameters.max_tokens,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            call = self._provider.Generate(
                provider_service_pb2.GenerateRequest(
                    instance=model.provider, model=model.upstream_model,
                    messages=messages, parameters=parameters),
                timeout=deadline.remaining_s(),
            )  # fmt: skip
            summary = None
            try:
                async for event in call:
                    if event.HasField("delta"):
                        if not delivered:
                            span.set_attribute(
                                semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
                                time.monotonic() - started,
                            )
                        delivered.append(event.delta.text)
                        yield Delta(event.delta.text)
                    else:
                        summary = event.summary
            except grpc.aio.AioRpcError as error:
                failure = peer_failure("provider", error)
                span.set_status(Status(StatusCode.ERROR, failure.reason))
                span.set_attribute(semconv.ERROR_TYPE, failure.reason)
                raise failure from error
            finally:
                call.cancel()
            if summary is None:
                span.set_status(Status(StatusCode.ERROR, "UPSTREAM_STREAM_CUT"))
                raise RpcFailure(
                    grpc.StatusCode.UNAVAILABLE, "provider stream ended without a summary",
                    reason="UPSTREAM_STREAM_CUT",
                )  # fmt: skip
            span.set_attributes(
                {
                    semconv.GEN_AI_RESPONSE_MODEL: summary.response_model,
                    semconv.GEN_AI_RESPONSE_ID: summary.provider_request_id,
                    semconv.GEN_AI_RESPONSE_FINISH_REASONS: [
                        chat_pb2.FinishReason.Name(summary.finish_reason)
                        .removeprefix("FINISH_REASON_")
                        .lower()
                    ],
                    semconv.GEN_AI_USAGE_INPUT_TOKENS: summary.usage.input_tokens,
                    semconv.GEN_AI_USAGE_OUTPUT_TOKENS: summary.usage.output_tokens,
                }
            )
        yield Finished(model, summary, attempts=0)


def _note(name: str, model: CatalogModel, failure: RpcFailure, **extra: float) -> None:
    """Records a retry or fallback in the log and as an event on the request's span."""
    attributes: dict[str, AttributeValue] = {
        "model": model.name,
        semconv.ERROR_REASON: failure.reason,
        **extra,
    }
    log.info(name, **attributes)
    observability.event(name, attributes)


class FailureKind(enum.Enum):
    """Whose failure it was, which decides whether the upstream's circuit hears of it."""

    # The caller's request was at fault (bad input): never retried, never counted.
    CALLER = "caller"
    # The caller's own deadline ran out: nothing is left to retry with, nothing counted.
    CALLER_DEADLINE = "caller_deadline"
    # The mesh's provider process failed or could not be reached; the upstream is fine.
    PROVIDER_REPLICA = "provider_replica"
    # The upstream did not answer within its instance's timeout: counted, then failed over.
    UPSTREAM_TIMEOUT = "upstream_timeout"
    # Any other upstream failure: counted, then retried or failed over.
    COUNTED = "counted"


def classify_failure(failure: RpcFailure, deadline: Deadline) -> FailureKind:
    if failure.code == grpc.StatusCode.INVALID_ARGUMENT:
        return FailureKind.CALLER
    if failure.reason in PROVIDER_REPLICA_REASONS:
        return FailureKind.PROVIDER_REPLICA
    if failure.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        # The provider shortens the instance's timeout to what is left of the caller's
        # deadline: if little is left now, that deadline was the bound, not the upstream.
        if failure.reason == UPSTREAM_TIMEOUT and deadline.remaining_s() > CALLER_DEADLINE_SLACK_S:
            return FailureKind.UPSTREAM_TIMEOUT
        return FailureKind.CALLER_DEADLINE
    return FailureKind.COUNTED


def interrupted_failure(cause: RpcFailure, chunks: list[str]) -> RpcFailure:
    """A failure after text was delivered: says how much, so nothing passes for complete."""
    delivered_chars = sum(map(len, chunks))
    return RpcFailure(
        cause.code,
        f"stream interrupted after {len(chunks)} deltas ({delivered_chars} characters): "
        f"{cause.message}",
        reason="STREAM_INTERRUPTED",
        metadata={
            **cause.metadata,
            "upstream_reason": cause.reason,
            "delivered_deltas": str(len(chunks)),
            "delivered_chars": str(delivered_chars),
            "delivered_tokens_estimate": str(estimate_text_tokens(delivered_chars)),
        },
        retry_after_s=cause.retry_after_s,
    )
