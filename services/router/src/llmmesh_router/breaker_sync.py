"""Shares circuit breaker state between router replicas through Redis.

A replica that opens or closes a circuit writes the state to a Redis hash (so replicas
that start later learn it) and publishes it (so running replicas adopt it at once). Each
replica still decides locally, in microseconds; Redis only carries transitions. When a
circuit half-opens, replicas race for one probe lease (SET NX with an expiry), so the
mesh as a whole sends a single probe. Open times travel as wall-clock milliseconds, so
replicas agree on them to within their clock skew. If Redis is unreachable each replica
keeps breaking on its own and resynchronises when Redis returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

import redis.asyncio as redis
import structlog

from llmmesh_router.breaker import BreakerRegistry, BreakerState

log = structlog.get_logger(__name__)

CHANNEL = "llmmesh:breakers"
STATE_KEY = "llmmesh:breaker:{key}"
PROBE_KEY = "llmmesh:breaker-probe:{key}"
RESUBSCRIBE_DELAY_S = 1.0


class RedisBreakerSync:
    def __init__(
        self, client: redis.Redis, registry: BreakerRegistry, recovery_timeout_s: float
    ) -> None:
        self._client = client
        self._registry = registry
        self._recovery_timeout_s = recovery_timeout_s
        self._replica = uuid.uuid4().hex
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen())

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()

    def publish(self, key: str, _old: BreakerState, new: BreakerState) -> None:
        """Called on every local transition; shares opens and closes, not half-opens."""
        if new is BreakerState.HALF_OPEN:
            return
        task = asyncio.ensure_future(self._publish(key, new, int(time.time() * 1000)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def claim_probe(self, key: str) -> bool:
        """True when this replica may send the one probe of a half-open circuit."""
        try:
            claimed = await self._client.set(
                PROBE_KEY.format(key=key), self._replica, nx=True,
                px=int(self._recovery_timeout_s * 1000),
            )  # fmt: skip
        except redis.RedisError:
            return True  # without Redis, each replica probes for itself
        return bool(claimed)

    async def _publish(self, key: str, state: BreakerState, at_ms: int) -> None:
        message = json.dumps(
            {"key": key, "state": state.value, "at_ms": at_ms, "from": self._replica}
        )
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                if state is BreakerState.OPEN:
                    pipe.hset(
                        STATE_KEY.format(key=key), mapping={"state": state.value, "at_ms": at_ms}
                    )
                    pipe.pexpire(STATE_KEY.format(key=key), int(self._recovery_timeout_s * 1000))
                else:
                    pipe.delete(STATE_KEY.format(key=key), PROBE_KEY.format(key=key))
                pipe.publish(CHANNEL, message)
                await pipe.execute()
            log.info("circuit_shared", circuit=key, state=state.value)
        except redis.RedisError as error:
            log.warning("breaker_publish_failed", circuit=key, error=type(error).__name__)

    async def _listen(self) -> None:
        while True:
            try:
                await self._load_open_circuits()
                async with self._client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._apply(json.loads(message["data"]))
            except redis.RedisError as error:
                log.warning("breaker_sync_lost", error=type(error).__name__)
                await asyncio.sleep(RESUBSCRIBE_DELAY_S)

    async def _load_open_circuits(self) -> None:
        async for name in self._client.scan_iter(match=STATE_KEY.format(key="*")):
            state = await self._client.hgetall(name)
            key = (name.decode() if isinstance(name, bytes) else name).split(":", 2)[2]
            if state:
                self._apply(
                    {
                        "key": key,
                        "state": _text(state, "state"),
                        "at_ms": int(_text(state, "at_ms")),
                    }
                )

    def _apply(self, message: dict[str, object]) -> None:
        if message.get("from") == self._replica:
            return
        key = str(message["key"])
        instance, _, model = key.partition("/")
        age_s = max(time.time() - int(str(message["at_ms"])) / 1000, 0.0)
        state = BreakerState(str(message["state"]))
        self._registry.get(instance, model).apply_remote(state, age_s)
        log.info("circuit_adopted", circuit=key, state=state.value)


def _text(mapping: dict[bytes | str, bytes | str], field: str) -> str:
    value = mapping.get(field.encode(), mapping.get(field, b""))
    return value.decode() if isinstance(value, bytes) else value
