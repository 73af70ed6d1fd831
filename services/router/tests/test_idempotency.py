"""Results under client request ids: kept for a window within a byte budget, joined while
running, and refused for a different request."""

from __future__ import annotations

import asyncio

import pytest

from llmmesh.router.v1 import router_service_pb2
from llmmesh.runtime.errors import RpcFailure
from llmmesh_router.idempotency import IdempotencyStore, fingerprint


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_result_is_kept_for_its_window_and_refused_for_another_request() -> None:
    clock = Clock()
    store: IdempotencyStore[str] = IdempotencyStore(len, window_s=600, clock=clock)
    store.keep("k", "fp", "answer")
    assert store.kept("k", "fp") == "answer"
    with pytest.raises(RpcFailure) as caught:
        store.kept("k", "other")
    assert caught.value.reason == "CLIENT_REQUEST_ID_REUSED"
    clock.now = 601
    assert store.kept("k", "fp") is None


def test_the_byte_budget_drops_the_oldest_and_skips_results_too_large_to_keep() -> None:
    store: IdempotencyStore[str] = IdempotencyStore(len, max_bytes=100)
    store.keep("a", "fp", "x" * 11)  # over a tenth of the budget: not kept
    assert store.kept("a", "fp") is None
    for name in "bcdefghijk":
        store.keep(name, "fp", "x" * 10)
    store.keep("l", "fp", "x" * 10)
    assert store.kept("b", "fp") is None
    assert store.kept("l", "fp") == "x" * 10


def test_the_fingerprint_ignores_only_the_id() -> None:
    one = router_service_pb2.EmbedRequest(model="m", inputs=["a"], client_request_id="1")
    two = router_service_pb2.EmbedRequest(model="m", inputs=["a"], client_request_id="2")
    other = router_service_pb2.EmbedRequest(model="m", inputs=["b"], client_request_id="1")
    assert fingerprint(one) == fingerprint(two) != fingerprint(other)


async def test_a_retry_while_running_joins_and_a_cancelled_first_call_fails_joiners() -> None:
    store: IdempotencyStore[str] = IdempotencyStore(len)
    runs = 0
    release = asyncio.Event()

    async def run() -> str:
        nonlocal runs
        runs += 1
        await release.wait()
        return "vectors"

    first = asyncio.ensure_future(store.once("k", "fp", run))
    second = asyncio.ensure_future(store.once("k", "fp", run))
    await asyncio.sleep(0.01)
    release.set()
    assert await first == ("vectors", True)
    assert await second == ("vectors", False)
    assert runs == 1
    assert await store.once("k", "fp", run) == ("vectors", False)

    release.clear()
    first = asyncio.ensure_future(store.once("c", "fp", run))
    second = asyncio.ensure_future(store.once("c", "fp", run))
    await asyncio.sleep(0.01)
    first.cancel()
    with pytest.raises(RpcFailure) as caught:
        await second
    assert caught.value.reason == "CLIENT_REQUEST_CANCELLED"
    with pytest.raises(asyncio.CancelledError):
        await first


def test_streams_under_one_id_must_be_the_same_request() -> None:
    store: IdempotencyStore[str] = IdempotencyStore(len)
    store.enter_stream("k", "fp")
    store.enter_stream("k", "fp")
    with pytest.raises(RpcFailure):
        store.enter_stream("k", "other")
    store.leave_stream("k")
    store.leave_stream("k")
    store.enter_stream("k", "other")  # nothing running under the id any more
