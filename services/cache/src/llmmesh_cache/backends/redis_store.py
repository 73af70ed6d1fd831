"""Entries in Redis, shared by every cache replica, with a stream of changes for their indexes.

Layout, per tenant, all under one hash tag so a tenant's keys share a cluster slot and each
write is one atomic script:
  <prefix>:{tenant}:e:<entry_id>  hash (answer, meta, vector) with the entry's TTL
  <prefix>:{tenant}:lru           zset entry_id -> last use (ms); eviction pops the lowest
  <prefix>:{tenant}:exp           zset entry_id -> expiry (ms); lets writes prune the dead
  <prefix>:{tenant}:idx           hash entry_id -> "<size_bytes> <model>"
  <prefix>:{tenant}:bytes         total size of the tenant's entries
Every put and removal is also appended to the stream <prefix>:changes, which each replica
follows to keep its in-process vector index in step (see `index_sync`).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Sequence

import redis.asyncio as redis_asyncio
import redis.exceptions

from llmmesh_cache.entries import CacheEntry, TenantLimits

# Removal shared by the scripts: forget an entry everywhere and give back its bytes.
_DROP = """
local function drop(id)
  local info = redis.call('HGET', KEYS[3], id)
  if info then
    redis.call('DECRBY', KEYS[4], tonumber(string.match(info, '^(%d+)')))
    redis.call('HDEL', KEYS[3], id)
  end
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('DEL', ARGV[1] .. id)
end
local function prune_expired(now_ms, removed)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms)) do
    drop(id)
    table.insert(removed, id)
  end
end
"""

# KEYS: lru, exp, idx, bytes, entry. ARGV: entry key prefix, entry id, answer, meta, vector,
# expires_at_ms, now_ms, ttl_ms, size, model, max_entries, max_bytes.
_PUT = (
    _DROP
    + """
local id = ARGV[2]
local removed = {}
prune_expired(ARGV[7], removed)
drop(id)
redis.call('HSET', KEYS[5], 'answer', ARGV[3], 'meta', ARGV[4], 'vector', ARGV[5])
redis.call('PEXPIRE', KEYS[5], ARGV[8])
redis.call('ZADD', KEYS[1], ARGV[7], id)
redis.call('ZADD', KEYS[2], ARGV[6], id)
redis.call('HSET', KEYS[3], id, ARGV[9] .. ' ' .. ARGV[10])
local total = redis.call('INCRBY', KEYS[4], ARGV[9])
local count = redis.call('ZCARD', KEYS[1])
local max_entries, max_bytes = tonumber(ARGV[11]), tonumber(ARGV[12])
while count > 1 and (count > max_entries or total > max_bytes) do
  local victim = nil
  for _, candidate in ipairs(redis.call('ZRANGE', KEYS[1], 0, 1)) do
    if candidate ~= id and victim == nil then victim = candidate end
  end
  drop(victim)
  table.insert(removed, victim)
  total = tonumber(redis.call('GET', KEYS[4]))
  count = count - 1
end
return removed
"""
)

# KEYS: lru, exp, idx, bytes. ARGV: entry key prefix, now_ms, model ("" = any), entry id
# ("" = any).
_INVALIDATE = (
    _DROP
    + """
local pruned = {}
prune_expired(ARGV[2], pruned)
local ids
if ARGV[4] ~= '' then ids = {ARGV[4]} else ids = redis.call('HKEYS', KEYS[3]) end
local removed = {}
for _, id in ipairs(ids) do
  local info = redis.call('HGET', KEYS[3], id)
  if info and (ARGV[3] == '' or string.match(info, '^%d+ (.*)$') == ARGV[3]) then
    drop(id)
    table.insert(removed, id)
  end
end
return {removed, pruned}
"""
)

STREAM_MAX_EVENTS = 10_000
_SCAN_BATCH = 500


def _tenant_tag(prefix: str, tenant: str) -> str:
    # Braces would break the cluster hash tag and colons the key layout, so the tenant is
    # percent-encoded.
    return f"{prefix}:{{{urllib.parse.quote(tenant, safe='')}}}"


class RedisEntryStore:
    """Entries in one Redis (single node; per-tenant hash tags keep a cluster possible)."""

    def __init__(self, client: redis_asyncio.Redis, key_prefix: str = "llmmesh:cache") -> None:
        self._client = client
        self._prefix = key_prefix
        self._put_script = client.register_script(_PUT)
        self._invalidate_script = client.register_script(_INVALIDATE)

    @property
    def client(self) -> redis_asyncio.Redis:
        return self._client

    @property
    def stream_key(self) -> str:
        return f"{self._prefix}:changes"

    @property
    def epoch_key(self) -> str:
        return f"{self._prefix}:epoch"

    def _keys(self, tenant: str) -> list[str]:
        tag = _tenant_tag(self._prefix, tenant)
        return [f"{tag}:lru", f"{tag}:exp", f"{tag}:idx", f"{tag}:bytes"]

    def _entry_prefix(self, tenant: str) -> str:
        return f"{_tenant_tag(self._prefix, tenant)}:e:"

    async def get(self, tenant: str, entry_ids: Sequence[str]) -> list[CacheEntry | None]:
        prefix = self._entry_prefix(tenant)
        async with self._client.pipeline(transaction=False) as pipe:
            for entry_id in entry_ids:
                pipe.hmget(prefix + entry_id, "answer", "meta")
            rows: list[list[bytes | None]] = await pipe.execute()
        return [
            _decode(entry_id, answer, meta, b"") if answer is not None and meta is not None
            else None
            for entry_id, (answer, meta) in zip(entry_ids, rows, strict=True)
        ]  # fmt: skip

    async def touch(self, tenant: str, entry_id: str, now_ms: int) -> None:
        await self._client.zadd(self._keys(tenant)[0], {entry_id: now_ms}, xx=True)

    async def put(self, entry: CacheEntry, limits: TenantLimits, now_ms: int) -> list[str]:
        meta = json.dumps(
            {"tenant": entry.tenant, "model": entry.model, "partition": entry.partition,
             "prompt": entry.prompt_text, "expires_at_ms": entry.expires_at_ms}
        )  # fmt: skip
        keys = [*self._keys(entry.tenant), self._entry_prefix(entry.tenant) + entry.entry_id]
        args: list[bytes | str | int] = [
            self._entry_prefix(entry.tenant), entry.entry_id, entry.answer, meta, entry.vector,
            entry.expires_at_ms, now_ms, max(1, int(limits.ttl_s * 1000)), entry.size_bytes,
            entry.model, limits.max_entries, limits.max_bytes,
        ]  # fmt: skip
        removed = [item.decode() for item in await self._put_script(keys=keys, args=args)]
        await self._publish(entry.tenant, put=[entry.entry_id] if entry.vector else [],
                            removed=removed)  # fmt: skip
        return removed

    async def invalidate(self, tenant: str, model: str, entry_id: str) -> list[str]:
        args: list[bytes | str | int] = [
            self._entry_prefix(tenant),
            int(time.time() * 1000),
            model,
            entry_id,
        ]
        removed_raw, pruned_raw = await self._invalidate_script(keys=self._keys(tenant), args=args)
        removed = [item.decode() for item in removed_raw]
        await self._publish(tenant, put=[], removed=removed + [i.decode() for i in pruned_raw])
        return removed

    async def _publish(self, tenant: str, *, put: list[str], removed: list[str]) -> None:
        if not put and not removed:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for op, ids in (("put", put), ("remove", removed)):
                if ids:
                    pipe.xadd(
                        self.stream_key, {"op": op, "tenant": tenant, "ids": " ".join(ids)},
                        maxlen=STREAM_MAX_EVENTS, approximate=True,
                    )  # fmt: skip
            await pipe.execute()

    async def entries_with_vectors(self) -> AsyncIterator[CacheEntry]:
        pattern = f"{self._prefix}:{{*}}:e:*"
        batch: list[str] = []
        async for key in self._client.scan_iter(match=pattern, count=_SCAN_BATCH):
            batch.append(key.decode())
            if len(batch) >= _SCAN_BATCH:
                for entry in await self._load_vectors(batch):
                    yield entry
                batch = []
        for entry in await self._load_vectors(batch):
            yield entry

    async def load_vectors(self, tenant: str, entry_ids: Sequence[str]) -> list[CacheEntry]:
        """The entries among the ids that still exist and carry an embedding."""
        prefix = self._entry_prefix(tenant)
        return await self._load_vectors([prefix + entry_id for entry_id in entry_ids])

    async def _load_vectors(self, keys: list[str]) -> list[CacheEntry]:
        if not keys:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, "meta", "vector")
            rows: list[list[bytes | None]] = await pipe.execute()
        entries = []
        for key, (meta, vector) in zip(keys, rows, strict=True):
            if meta is not None and vector:
                entries.append(_decode(key.rsplit(":e:", 1)[1], b"", meta, vector))
        return entries

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            return False

    async def close(self) -> None:
        await self._client.aclose()


def _decode(entry_id: str, answer: bytes, meta_raw: bytes, vector: bytes) -> CacheEntry:
    meta = json.loads(meta_raw)
    return CacheEntry(
        tenant=meta["tenant"], entry_id=entry_id, model=meta["model"],
        partition=meta["partition"], prompt_text=meta["prompt"], answer=answer,
        vector=vector, expires_at_ms=int(meta["expires_at_ms"]),
    )  # fmt: skip
