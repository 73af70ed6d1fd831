"""Circuit breakers open on consecutive failures or a failure rate, fail fast while open,
and half-open with exactly one probe after the recovery timeout."""

from __future__ import annotations

import asyncio
import timeit

from llmmesh_router.breaker import BreakerRegistry, BreakerSettings, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock, **settings: float) -> tuple[CircuitBreaker, list[tuple[str, str]]]:
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        "sim/m",
        BreakerSettings(**settings),  # type: ignore[arg-type]
        clock=clock,
        on_change=lambda _key, old, new: changes.append((old.value, new.value)),
    )
    return breaker, changes


def test_opens_after_consecutive_failures_and_refuses_calls() -> None:
    breaker, changes = _breaker(Clock(), consecutive_failures=3)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.allows_request()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allows_request()
    assert changes == [("closed", "open")]


def test_a_success_resets_the_consecutive_count() -> None:
    breaker, _ = _breaker(Clock(), consecutive_failures=3, min_calls=100)
    for _ in range(10):
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_opens_on_failure_rate_once_enough_calls_were_seen() -> None:
    breaker, _ = _breaker(
        Clock(), consecutive_failures=100, failure_rate=0.5, window=10, min_calls=10
    )
    for _ in range(4):
        breaker.record_success()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED  # 8 calls: below min_calls
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


def test_half_opens_after_recovery_timeout_with_a_single_probe() -> None:
    clock = Clock()
    breaker, changes = _breaker(clock, consecutive_failures=1, recovery_timeout_s=30)
    breaker.record_failure()
    clock.now += 29.9
    assert not breaker.allows_request()
    clock.now += 0.2
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allows_request()
    assert not breaker.allows_request(), "a second probe must wait for the first"
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allows_request()
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_failed_probe_opens_the_circuit_for_another_recovery_timeout() -> None:
    clock = Clock()
    breaker, _ = _breaker(clock, consecutive_failures=1, recovery_timeout_s=10)
    breaker.record_failure()
    clock.now += 10
    assert breaker.allows_request()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 9
    assert not breaker.allows_request()
    clock.now += 1
    assert breaker.allows_request()


def test_cancelled_probe_lets_another_probe_through() -> None:
    clock = Clock()
    breaker, _ = _breaker(clock, consecutive_failures=1, recovery_timeout_s=1)
    breaker.record_failure()
    clock.now += 1
    assert breaker.allows_request()
    breaker.release_probe()
    assert breaker.allows_request()


def test_remote_open_is_adopted_with_its_age() -> None:
    clock = Clock()
    breaker, _ = _breaker(clock, recovery_timeout_s=30)
    breaker.apply_remote(BreakerState.OPEN, opened_at_age_s=25)
    assert not breaker.allows_request()
    clock.now += 5
    assert breaker.allows_request()


def test_open_circuit_answers_in_microseconds() -> None:
    registry = BreakerRegistry(BreakerSettings(consecutive_failures=1))
    breaker = registry.get("openai-primary", "gpt-x")
    breaker.record_failure()
    assert registry.get("openai-primary", "gpt-x") is breaker
    seconds_per_check = min(timeit.repeat(breaker.allows_request, number=10_000, repeat=3)) / 10_000
    # A generous bound: the check is a few attribute reads; a network call would take ms.
    assert seconds_per_check < 50e-6


async def test_a_sleeping_retry_wakes_the_moment_the_circuit_opens() -> None:
    breaker, _ = _breaker(Clock(), consecutive_failures=2)
    breaker.record_failure()
    sleeper = asyncio.create_task(breaker.wait_opened(30.0))
    await asyncio.sleep(0.01)
    assert not sleeper.done()
    breaker.record_failure()
    assert await asyncio.wait_for(sleeper, 1.0) is True


async def test_a_sleeping_retry_wakes_when_another_replica_opens_the_circuit() -> None:
    breaker, _ = _breaker(Clock())
    sleeper = asyncio.create_task(breaker.wait_opened(30.0))
    await asyncio.sleep(0.01)
    breaker.apply_remote(BreakerState.OPEN, opened_at_age_s=0.0)
    assert await asyncio.wait_for(sleeper, 1.0) is True


async def test_a_retry_sleeps_its_whole_delay_while_the_circuit_stays_closed() -> None:
    breaker, _ = _breaker(Clock(), consecutive_failures=5)
    breaker.record_failure()
    assert await breaker.wait_opened(0.05) is False
    breaker.record_success()
    assert await breaker.wait_opened(0.01) is False
