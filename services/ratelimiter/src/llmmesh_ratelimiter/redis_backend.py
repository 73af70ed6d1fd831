"""Limiter state in Redis, a single node or a Cluster: each decision is one atomic Lua script.

Read-compute-write in separate calls lets concurrent replicas admit the same last unit twice;
running the whole check-and-take inside one script makes the decision exact for any number
of replicas. Scripts run by EVALSHA; redis-py loads them again when a server answers
NOSCRIPT (after a restart or a failover), so recovery needs no operator.

Time comes from the clock of the Redis server that holds a decision's keys (TIME inside the
script), never from the replicas: replicas with skewed clocks still refill buckets and expire
leases identically.

A slow Redis is not a dead one. Every command waits for its answer up to the connection's
socket timeout (the decision timeout, a generous bound); only a refused or broken connection,
or silence past that bound, counts as unreachable and opens the store's circuit, after which
calls fail at once (no wait) until Redis answers again.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.resources
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from llmmesh.runtime.tls import redis_tls_options
from llmmesh_ratelimiter import keys
from llmmesh_ratelimiter.backend import StoreCircuitOpenError
from llmmesh_ratelimiter.limits import (
    NOT_FOUND,
    LimitState,
    ReservationPlan,
    ReserveOutcome,
    SettleOutcome,
)
from llmmesh_ratelimiter.store_circuit import StoreCircuit

RedisClient = redis.asyncio.Redis | RedisCluster
ResultT = TypeVar("ResultT")

# One retry on a fresh connection hides a pooled connection that died with a restarted
# server; more would only stretch the wait. A command that timed out is not retried: the
# bound has passed, and Redis counts as unreachable.
_RETRIES = 1
# A finish reads the record, then runs its script only if the record is unchanged; it reads
# again when a concurrent finish or reservation changed it in between.
_FINISH_READS = 3
_FINISHED, _REPEATED, _NOTHING, _CHANGED = 1, 2, 0, 3
_ABANDONED = 2


class AttemptAbandonedError(RuntimeError):
    """The decision's attempt had been given up before its script ran; it took nothing."""


def _script_text(name: str) -> str:
    return importlib.resources.files("llmmesh_ratelimiter").joinpath("lua", name).read_text()


def connect_redis(
    url: str, *, cluster: bool, timeout_s: float, max_connections: int, ca_file: str = ""
) -> RedisClient:
    """A client that waits up to `timeout_s` for each answer: the bound past which a silent
    Redis counts as unreachable (the decision timeout)."""
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), _RETRIES, supported_errors=(redis.ConnectionError,)),
        "max_connections": max_connections,
        **redis_tls_options(url, ca_file),
    }
    if cluster:
        return RedisCluster.from_url(url, **options)
    return redis.asyncio.Redis.from_url(url, **options)


class RedisBackend:
    """The LimiterBackend for Redis; all replicas pointed at one Redis share exact limits."""

    def __init__(
        self, client: RedisClient, max_in_flight: int, circuit: StoreCircuit | None = None
    ) -> None:
        self._client = client
        self.circuit = circuit or StoreCircuit()
        # redis-py's pools raise instead of waiting when every connection is busy, and the
        # cluster client then tears down its connections; callers queue here instead, and
        # their deadlines bound how long they queue. One connection is kept for readiness
        # probes, so a probe never waits behind slow decisions and mistakes slow for dead.
        self._in_flight = asyncio.Semaphore(max(1, max_in_flight - 1))
        self._probes = asyncio.Semaphore(1)
        self._reserve_script = client.register_script(_script_text("reserve.lua"))
        self._finish_script = client.register_script(_script_text("finish.lua"))

    async def reserve(self, plan: ReservationPlan) -> ReserveOutcome:
        record_key = keys.record_key(plan.reservation_id)
        if record_key is None:
            raise ValueError(f"malformed reservation id {plan.reservation_id!r}")
        args: list[str | int] = [
            plan.lease_ttl_ms, plan.estimated_tokens, plan.reservation_id, plan.attempt
        ]  # fmt: skip
        for check in plan.checks:
            args += [
                check.kind.value,
                check.capacity,
                check.window_ms,
                check.cost,
                int(check.shadow),
            ]
        marker = keys.abandoned_key(record_key, plan.attempt)
        reply = await self._queued(
            lambda: self._reserve_script(
                keys=[record_key, marker, *(check.key for check in plan.checks)], args=args
            )
        )
        values = [int(value) for value in reply]
        if values[0] == _ABANDONED:
            raise AttemptAbandonedError(plan.reservation_id)
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
        code, estimated_tokens, settled_tokens = await self._finish(
            reservation_id, "settle", actual_tokens=actual_tokens
        )
        if code not in (_FINISHED, _REPEATED):
            return NOT_FOUND
        return SettleOutcome(
            found=True,
            refunded_tokens=max(estimated_tokens - settled_tokens, 0),
            charged_tokens=max(settled_tokens - estimated_tokens, 0),
            replayed=code == _REPEATED,
        )

    async def release(self, reservation_id: str) -> bool:
        code, _, _ = await self._finish(reservation_id, "release")
        return code in (_FINISHED, _REPEATED)

    async def abandon(self, plan: ReservationPlan) -> None:
        await self._finish(
            plan.reservation_id, "abandon", attempt=plan.attempt, marker_ttl_ms=plan.lease_ttl_ms
        )

    async def _finish(
        self,
        reservation_id: str,
        mode: str,
        *,
        actual_tokens: int = 0,
        attempt: str = "",
        marker_ttl_ms: int = 0,
    ) -> tuple[int, int, int]:
        """Reads the record to learn its keys, then finishes it in one script.

        Cluster scripts may only touch keys they declare, and the keys a reservation took
        are known only from its record; the script re-checks that the record is unchanged.
        """
        record_key = keys.record_key(reservation_id)
        if record_key is None:
            return _NOTHING, 0, 0
        marker = [keys.abandoned_key(record_key, attempt)] if mode == "abandon" else []
        for _ in range(_FINISH_READS):
            raw = await self._queued(lambda: self._client.get(record_key))
            if raw is None and mode != "abandon":
                return _NOTHING, 0, 0
            script_keys = [record_key, *_record_entries(raw), *marker]
            args = [raw or "", actual_tokens, mode, reservation_id, attempt, marker_ttl_ms]
            reply = await self._queued(
                functools.partial(self._finish_script, keys=script_keys, args=args)
            )
            code, estimated_tokens, settled_tokens = (int(value) for value in reply)
            if code != _CHANGED:
                return code, estimated_tokens, settled_tokens
        return _NOTHING, 0, 0

    async def ping(self) -> bool:
        """Asks Redis even while the circuit is open: this is how it learns Redis is back."""
        return bool(await self._queued(self._client.ping, probe=True))

    async def close(self) -> None:
        await self._client.aclose()

    async def _queued(
        self, call: Callable[[], Awaitable[ResultT]], *, probe: bool = False
    ) -> ResultT:
        """Runs `call` once a connection slot is free; it is only created then, so a caller
        that times out while queued leaves no coroutine behind. While the circuit is open,
        calls fail before they are sent, queued ones included."""
        async with self._probes if probe else self._in_flight:
            if not probe and not self.circuit.allows_call():
                raise StoreCircuitOpenError("redis did not answer lately")
            try:
                if isinstance(self._client, RedisCluster):
                    # Before it knows the slot map (first use, or after losing every node)
                    # the cluster client sends scripts to an arbitrary node, and concurrent
                    # MOVED replies then make it tear down connections in use. Initializing
                    # first (a no-op once done) routes every script to its slot's node.
                    await self._client.initialize()
                result = await call()
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                self.circuit.record_unreachable()
                raise
            self.circuit.record_answer()
            return result


def _record_entries(raw: bytes | str | None) -> list[str]:
    """The keys a held reservation took, in the order its script expects them."""
    if raw is None:
        return []
    record = json.loads(raw)
    if record.get("s") != "held":
        return []
    # cjson writes an empty Lua table as an object, so a record that took nothing has {}.
    entries = record["t"] if isinstance(record["t"], list) else []
    return [entry["k"] for entry in entries]
