"""The rules every backend follows, checked on the in-memory store, one Redis and a Cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from llmmesh_ratelimiter.admission import Admission, Verdict
from llmmesh_ratelimiter.backend import LimiterBackend
from llmmesh_ratelimiter.memory_backend import MemoryBackend
from llmmesh_ratelimiter.policy_holder import PolicyHolder
from llmmesh_ratelimiter.rate_policy import FailureMode, load_rate_policy
from llmmesh_ratelimiter.redis_backend import RedisBackend, connect_redis

MakeAdmission = Callable[..., Admission]

# Long enough that refill during a test adds less than one request or token.
MONTH_S = 30 * 86400


def counter_total(reader: InMemoryMetricReader, name: str) -> int:
    data = reader.get_metrics_data()
    total = 0
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    total += sum(int(point.value) for point in metric.data.data_points)
    return total


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture(params=["memory", "redis", "cluster"])
async def make_admission(
    request: pytest.FixtureRequest, metric_reader: InMemoryMetricReader
) -> AsyncIterator[MakeAdmission]:
    backends: list[LimiterBackend] = []

    def backend() -> LimiterBackend:
        if request.param == "memory":
            return MemoryBackend()
        cluster = request.param == "cluster"
        url = request.getfixturevalue("cluster_url" if cluster else "redis_url")
        client = connect_redis(url, cluster=cluster, timeout_s=2.0, max_connections=8)
        return RedisBackend(client, max_in_flight=8)

    def make(limits: list[dict[str, Any]], lease_ttl_s: float = 60.0, **section: Any) -> Admission:
        document = {
            "tenants": [{"name": "acme", "tier": "std"}],
            "limits": {"tiers": {"std": limits}, **section},
        }
        store = backend()
        backends.append(store)
        return Admission(
            store,
            PolicyHolder(load_rate_policy(document)),
            decision_timeout_s=2.0,
            default_failure_mode=FailureMode.CLOSED,
            lease_ttl_s=lease_ttl_s,
            meter=MeterProvider(metric_readers=[metric_reader]).get_meter("test"),
        )

    yield make
    for store in backends:
        await store.close()


def remaining(verdict: Verdict, name: str) -> int:
    return next(
        state.remaining
        for check, state in zip(verdict.checks, verdict.states, strict=True)
        if check.name == name
    )


def requests(limit: int, window_s: float = MONTH_S) -> dict[str, Any]:
    return {
        "name": "rpm",
        "kind": "requests",
        "scope": "tenant",
        "limit": limit,
        "window_s": window_s,
    }


def tokens(limit: int, window_s: float = MONTH_S) -> dict[str, Any]:
    return {
        "name": "tpm",
        "kind": "tokens",
        "scope": "tenant",
        "limit": limit,
        "window_s": window_s,
    }


def in_flight(limit: int) -> dict[str, Any]:
    return {"name": "in-flight", "kind": "concurrency", "scope": "tenant", "limit": limit}


async def test_request_limit_admits_its_capacity_then_denies_with_a_retry_hint(
    make_admission: MakeAdmission,
) -> None:
    admission = make_admission([requests(3, window_s=60)])
    verdicts = [await admission.reserve("acme", "m", 0, "") for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    denied = verdicts[3]
    assert denied.denied_limit == "rpm"
    assert denied.reservation_id == ""
    assert denied.states[0].exceeded
    assert denied.states[0].remaining == 0
    # One request refills every 60 s / 3 = 20 s.
    assert 19_000 <= denied.retry_after_ms <= 20_000
    assert 59_000 <= denied.states[0].reset_after_ms <= 60_000


async def test_denied_request_consumes_nothing_from_any_limit(
    make_admission: MakeAdmission,
) -> None:
    admission = make_admission([requests(10), tokens(1000), in_flight(5)])
    first = await admission.reserve("acme", "m", 800, "")
    assert first.allowed

    denied_by_tokens = await admission.reserve("acme", "m", 300, "")
    assert not denied_by_tokens.allowed
    assert denied_by_tokens.denied_limit == "tpm"
    assert [s.exceeded for s in denied_by_tokens.states] == [False, True, False]

    fits = await admission.reserve("acme", "m", 200, "")
    assert fits.allowed
    # The denial took neither a request nor a concurrency slot nor tokens.
    assert remaining(fits, "rpm") == 8
    assert remaining(fits, "in-flight") == 3
    assert remaining(fits, "tpm") == 0


async def test_denial_by_concurrency_leaves_tokens_and_requests_untouched(
    make_admission: MakeAdmission,
) -> None:
    admission = make_admission([requests(10), tokens(1000), in_flight(1)])
    held = await admission.reserve("acme", "m", 100, "")
    denied = await admission.reserve("acme", "m", 100, "")
    assert not denied.allowed
    assert denied.denied_limit == "in-flight"
    assert remaining(denied, "tpm") == 900
    assert remaining(denied, "rpm") == 9
    await admission.settle(held.reservation_id, 100)
    after = await admission.reserve("acme", "m", 100, "")
    assert after.allowed
    assert remaining(after, "tpm") == 800
    assert remaining(after, "rpm") == 8


async def test_settle_refunds_an_overestimate(make_admission: MakeAdmission) -> None:
    admission = make_admission([tokens(1000)])
    reserved = await admission.reserve("acme", "m", 600, "")
    assert remaining(reserved, "tpm") == 400
    settled = await admission.settle(reserved.reservation_id, 100)
    assert (settled.found, settled.refunded_tokens, settled.charged_tokens) == (True, 500, 0)
    assert remaining(await admission.reserve("acme", "m", 0, ""), "tpm") == 900


async def test_settle_charges_an_underestimate_into_debt_that_blocks_until_repaid(
    make_admission: MakeAdmission,
) -> None:
    admission = make_admission([tokens(1000, window_s=2)])
    reserved = await admission.reserve("acme", "m", 900, "")
    settled = await admission.settle(reserved.reservation_id, 1300)
    assert (settled.found, settled.refunded_tokens, settled.charged_tokens) == (True, 0, 400)
    # The bucket is 300 tokens in debt: even a zero-token request waits for the refill.
    blocked = await admission.reserve("acme", "m", 0, "")
    assert not blocked.allowed
    assert blocked.states[0].remaining == 0
    assert 400 <= blocked.retry_after_ms <= 600  # 300 tokens at 1000 per 2 s
    await asyncio.sleep(blocked.retry_after_ms / 1000 + 0.05)
    assert (await admission.reserve("acme", "m", 0, "")).allowed


async def test_settling_twice_refunds_once_and_answers_as_the_first_time(
    make_admission: MakeAdmission,
) -> None:
    admission = make_admission([tokens(1000), in_flight(5)])
    reserved = await admission.reserve("acme", "m", 500, "")
    first = await admission.settle(reserved.reservation_id, 100)
    assert (first.found, first.refunded_tokens, first.replayed) == (True, 400, False)
    # A caller that lost the first answer repeats it, even with another count: nothing moves.
    again = await admission.settle(reserved.reservation_id, 0)
    assert (again.found, again.refunded_tokens, again.charged_tokens) == (True, 400, 0)
    assert again.replayed
    after = await admission.reserve("acme", "m", 0, "")
    assert remaining(after, "tpm") == 900
    assert remaining(after, "in-flight") == 4


async def test_settle_and_release_do_not_undo_each_other(make_admission: MakeAdmission) -> None:
    admission = make_admission([tokens(1000)])
    settled = await admission.reserve("acme", "m", 500, "")
    await admission.settle(settled.reservation_id, 300)
    assert not await admission.release(settled.reservation_id)
    released = await admission.reserve("acme", "m", 200, "")
    assert await admission.release(released.reservation_id)
    assert not (await admission.settle(released.reservation_id, 200)).found
    assert remaining(await admission.reserve("acme", "m", 0, ""), "tpm") == 700


async def test_concurrent_repeats_of_one_settle_apply_it_once(
    make_admission: MakeAdmission,
) -> None:
    admission = make_admission([tokens(1000), in_flight(5)])
    reserved = await admission.reserve("acme", "m", 500, "")
    outcomes = await asyncio.gather(
        *(admission.settle(reserved.reservation_id, 100) for _ in range(8))
    )
    assert all(o.found and o.refunded_tokens == 400 for o in outcomes)
    assert sum(not o.replayed for o in outcomes) == 1
    assert remaining(await admission.reserve("acme", "m", 0, ""), "tpm") == 900


async def test_settle_frees_the_concurrency_slot(make_admission: MakeAdmission) -> None:
    admission = make_admission([in_flight(1)])
    held = await admission.reserve("acme", "m", 10, "")
    assert not (await admission.reserve("acme", "m", 10, "")).allowed
    await admission.settle(held.reservation_id, 10)
    assert (await admission.reserve("acme", "m", 10, "")).allowed


async def test_release_gives_back_requests_tokens_and_slot(make_admission: MakeAdmission) -> None:
    admission = make_admission([requests(2), tokens(1000), in_flight(1)])
    held = await admission.reserve("acme", "m", 700, "")
    assert await admission.release(held.reservation_id)
    assert await admission.release(held.reservation_id)  # a repeat changes nothing
    after = await admission.reserve("acme", "m", 1000, "")
    assert after.allowed
    assert remaining(after, "rpm") == 1
    assert remaining(after, "tpm") == 0


async def test_expired_lease_frees_capacity_and_cannot_be_settled(
    make_admission: MakeAdmission,
) -> None:
    admission = make_admission([in_flight(1)], lease_ttl_s=0.3)
    crashed = await admission.reserve("acme", "m", 10, "")
    assert crashed.allowed
    assert not (await admission.reserve("acme", "m", 10, "")).allowed
    await asyncio.sleep(0.4)
    assert (await admission.reserve("acme", "m", 10, "")).allowed
    assert not (await admission.settle(crashed.reservation_id, 10)).found


async def test_reserving_twice_with_one_request_id_takes_capacity_once(
    make_admission: MakeAdmission,
) -> None:
    admission = make_admission([requests(5), tokens(1000), in_flight(3)])
    first = await admission.reserve("acme", "m", 400, "req-1")
    again = await admission.reserve("acme", "m", 400, "req-1")
    assert first.allowed
    assert again.allowed
    assert again.reservation_id == first.reservation_id
    assert remaining(again, "tpm") == 600
    assert remaining(again, "rpm") == 4
    assert remaining(again, "in-flight") == 2
    # Settled, the id still replays rather than taking fresh capacity.
    await admission.settle(first.reservation_id, 400)
    replay = await admission.reserve("acme", "m", 400, "req-1")
    assert replay.allowed
    assert remaining(replay, "rpm") == 4
    other = await admission.reserve("acme", "m", 400, "req-2")
    assert other.reservation_id != first.reservation_id
    assert remaining(other, "rpm") == 3


async def test_shadow_limit_never_denies_but_counts(
    make_admission: MakeAdmission, metric_reader: InMemoryMetricReader
) -> None:
    shadow = {**requests(2), "shadow": True}
    admission = make_admission([shadow, tokens(1000)])
    verdicts = [await admission.reserve("acme", "m", 100, "") for _ in range(4)]
    assert all(v.allowed for v in verdicts)
    assert [v.states[0].exceeded for v in verdicts] == [False, False, True, True]
    assert [v.states[0].remaining for v in verdicts] == [1, 0, 0, 0]
    # The enforced limit still counted every admitted request.
    assert remaining(verdicts[3], "tpm") == 600
    assert counter_total(metric_reader, "llmmesh.ratelimit.shadow_exceeded") == 2


async def test_request_bigger_than_a_token_limit_is_denied_without_taking_anything(
    make_admission: MakeAdmission,
) -> None:
    admission = make_admission([requests(5), tokens(1000)])
    denied = await admission.reserve("acme", "m", 1001, "")
    assert not denied.allowed
    assert denied.denied_limit == "tpm"
    assert remaining(await admission.reserve("acme", "m", 0, ""), "rpm") == 4
