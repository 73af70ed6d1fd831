"""Limiter state in Redis, a single node or a Cluster: each decision is one atomic Lua script.

Read-compute-write in separate calls lets concurrent replicas admit the same last unit twice;
running the whole check-and-take inside one script makes the decision exact for any number
of replicas. Scripts run by EVALSHA; redis-py loads them again when a server answers
NOSCRIPT (after a restart or a failover), so recovery needs no operator.

Time comes from the clock of the Redis server that holds a decision's keys (TIME inside the
script), never from the replicas: replicas with skewed clocks still refill buckets and expire
leases identically.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from llmmesh.runtime.tls import redis_tls_options
from llmmesh_ratelimiter import keys
from llmmesh_ratelimiter.limits import (
    NOT_FOUND,
    LimitState,
    ReservationPlan,
    ReserveOutcome,
    SettleOutcome,
)

RedisClient = redis.asyncio.Redis | RedisCluster
ResultT = TypeVar("ResultT")

# One retry on a fresh connection hides a pooled connection that died with a restarted
# server; more would only stretch the wait, which the decision timeout bounds anyway.
_RETRIES = 1


def _script_text(name: str) -> str:
    return importlib.resources.files("llmmesh_ratelimiter").joinpath("lua", name).read_text()


def connect_redis(
    url: str, *, cluster: bool, timeout_s: float, max_connections: int, ca_file: str = ""
) -> RedisClient:
    """A client whose socket timeouts keep any single call within the decision timeout."""
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), _RETRIES),
        "max_connections": max_connections,
        **redis_tls_options(url, ca_file),
    }
    if cluster:
        return RedisCluster.from_url(url, **options)
    return redis.asyncio.Redis.from_url(url, **options)


class RedisBackend:
    """The LimiterBackend for Redis; all replicas pointed at one Redis share exact limits."""

    def __init__(self, client: RedisClient, max_in_flight: int) -> None:
        self._client = client
        # redis-py's pools raise instead of waiting when every connection is busy, and the
        # cluster client then tears down its connections; callers queue here instead, and
        # the decision timeout bounds how long they queue.
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._reserve_script = client.register_script(_script_text("reserve.lua"))
        self._finish_script = client.register_script(_script_text("finish.lua"))

    async def reserve(self, plan: ReservationPlan) -> ReserveOutcome:
        record_key = keys.record_key(plan.reservation_id)
        if record_key is None:
            raise ValueError(f"malformed reservation id {plan.reservation_id!r}")
        args: list[str | int] = [plan.lease_ttl_ms, plan.estimated_tokens, plan.reservation_id]
        for check in plan.checks:
            args += [
                check.kind.value,
                check.capacity,
                check.window_ms,
                check.cost,
                int(check.shadow),
            ]
        reply = await self._queued(
            lambda: self._reserve_script(
                keys=[record_key, *(check.key for check in plan.checks)], args=args
            )
        )
        values = [int(value) for value in reply]
        states = tuple(
            LimitState(
                remaining=values[offset],
                reset_after_ms=values[offset + 1],
                exceeded=values[offset + 2] == 1,
                retry_after_ms=values[offset + 3],
            )
            for offset in range(2, len(values), 4)
        )
        return ReserveOutcome(allowed=values[0] == 1, states=states, replayed=values[1] == 1)

    async def settle(self, reservation_id: str, actual_tokens: int) -> SettleOutcome:
        found, estimated_tokens = await self._finish(reservation_id, actual_tokens, "settle")
        if not found:
            return NOT_FOUND
        return SettleOutcome(
            found=True,
            refunded_tokens=max(estimated_tokens - actual_tokens, 0),
            charged_tokens=max(actual_tokens - estimated_tokens, 0),
        )

    async def release(self, reservation_id: str) -> bool:
        found, _ = await self._finish(reservation_id, 0, "release")
        return found

    async def _finish(self, reservation_id: str, actual_tokens: int, mode: str) -> tuple[bool, int]:
        """Reads the record to learn its keys, then finishes it in one script.

        Cluster scripts may only touch keys they declare, and the keys a reservation took
        are known only from its record; the script re-checks that the record is unchanged.
        """
        record_key = keys.record_key(reservation_id)
        if record_key is None:
            return False, 0
        raw = await self._queued(lambda: self._client.get(record_key))
        if raw is None:
            return False, 0
        record = json.loads(raw)
        if record.get("s") != "held":
            return False, 0
        # cjson writes an empty Lua table as an object, so a record that took nothing has {}.
        entries = record["t"] if isinstance(record["t"], list) else []
        reply = await self._queued(
            lambda: self._finish_script(
                keys=[record_key, *(entry["k"] for entry in entries)],
                args=[raw, actual_tokens, mode, reservation_id],
            )
        )
        return int(reply[0]) == 1, int(reply[1])

    async def ping(self) -> bool:
        return bool(await self._queued(self._client.ping))

    async def close(self) -> None:
        await self._client.aclose()

    async def _queued(self, call: Callable[[], Awaitable[ResultT]]) -> ResultT:
        """Runs `call` once a connection slot is free; it is only created then, so a caller
        that times out while queued leaves no coroutine behind."""
        async with self._in_flight:
            if isinstance(self._client, RedisCluster):
                # Before it knows the slot map (first use, or after losing every node) the
                # cluster client sends scripts to an arbitrary node, and concurrent MOVED
                # replies then make it tear down connections in use. Initializing first
                # (a no-op once done) routes every script to its slot's node.
                await self._client.initialize()
            return await call()
