"""Keeps this replica's vector index in step with the entries in Redis.

At start, and whenever Redis looks like a different instance (its epoch key changed or
vanished, as after a restart without persistence), the index is rebuilt from the entries
themselves. In between, the replica follows the stream of changes every replica appends
to: for each batch it re-reads the touched entries, so the index ends up matching what
Redis holds now whatever order the events came in. The index is only a way to find
candidates; every candidate is re-read from Redis before it is served, so a missed event
can cost a hit but can never serve a deleted entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any, cast

import redis.exceptions
import structlog

from llmmesh_cache.backends.redis_store import RedisEntryStore
from llmmesh_cache.vector_index import VectorIndex

_log = structlog.get_logger(__name__)

_EVENTS_PER_READ = 500
_RETRY_DELAY_S = 0.5
_REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class RedisIndexSync:
    """Rebuilds the index from Redis and then follows the change stream."""

    def __init__(self, store: RedisEntryStore, index: VectorIndex, block_ms: int = 500) -> None:
        self._store = store
        self._client = store.client
        self._index = index
        self._block_ms = block_ms
        self._epoch: bytes | None = None
        self._last_event_id = "0-0"
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Loads the index (if Redis answers now) and starts following changes."""
        with contextlib.suppress(*_REDIS_ERRORS):
            await self.rebuild()
        self._task = asyncio.create_task(self._follow(), name="cache-index-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def rebuild(self) -> None:
        """Replaces the index with the vectors of every live entry in Redis."""
        await self._client.set(self._store.epoch_key, uuid.uuid4().hex, nx=True)
        epoch = cast(bytes | None, await self._client.get(self._store.epoch_key))
        # Read the stream position first: changes made during the scan are replayed after.
        newest = cast(list[Any], await self._client.xrevrange(self._store.stream_key, count=1))
        entries = [entry async for entry in self._store.entries_with_vectors()]
        self._index.replace_all(entries)
        self._last_event_id = newest[0][0].decode() if newest else "0-0"
        self._epoch = epoch
        _log.info("cache index rebuilt", entries=len(entries))

    async def _follow(self) -> None:
        while True:
            try:
                if await self._must_rebuild():
                    await self.rebuild()
                    continue
                await self._apply_next_events()
            except _REDIS_ERRORS as error:
                _log.warning("cache index sync waiting for redis", error=type(error).__name__)
                await asyncio.sleep(_RETRY_DELAY_S)

    async def _must_rebuild(self) -> bool:
        """True after a Redis restart, or when the stream was trimmed past unread events."""
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.get(self._store.epoch_key)
            pipe.xrange(self._store.stream_key, count=1)
            epoch, oldest = cast(tuple[bytes | None, list[Any]], await pipe.execute())
        if self._epoch is None or epoch != self._epoch:
            return True
        return (
            bool(oldest)
            and _event_id(oldest[0][0]) > _event_id(self._last_event_id)
            and (self._last_event_id != "0-0")
        )

    async def _apply_next_events(self) -> None:
        reply = cast(
            list[Any],
            await self._client.xread(
                {self._store.stream_key: self._last_event_id},
                count=_EVENTS_PER_READ,
                block=self._block_ms,
            ),
        )
        touched: dict[str, set[str]] = {}
        for _stream, events in reply:
            for event_id, fields in events:
                tenant = fields[b"tenant"].decode()
                touched.setdefault(tenant, set()).update(fields[b"ids"].decode().split())
                self._last_event_id = event_id.decode()
        for tenant, entry_ids in touched.items():
            # Whatever the events said, what Redis holds now is the truth.
            live = await self._store.load_vectors(tenant, sorted(entry_ids))
            self._index.remove(tenant, entry_ids)
            self._index.add_many(live)


def _event_id(raw: bytes | str) -> tuple[int, int]:
    """A stream id ("<ms>-<seq>") as a comparable pair."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    milliseconds, sequence = text.split("-")
    return int(milliseconds), int(sequence)
