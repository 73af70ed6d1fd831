"""Entries in this process's memory: the embedded default when no Redis URL is configured."""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence

from llmmesh_cache.entries import CacheEntry, TenantLimits


class _TenantEntries:
    def __init__(self) -> None:
        # Ordered from least to most recently used.
        self.entries: collections.OrderedDict[str, CacheEntry] = collections.OrderedDict()
        self.total_bytes = 0

    def drop(self, entry_id: str) -> CacheEntry | None:
        entry = self.entries.pop(entry_id, None)
        if entry is not None:
            self.total_bytes -= entry.size_bytes
        return entry


class InMemoryEntryStore:
    """A single-process store with the same expiry and eviction rules as the Redis store."""

    def __init__(self) -> None:
        self._tenants: dict[str, _TenantEntries] = collections.defaultdict(_TenantEntries)

    async def get(self, tenant: str, entry_ids: Sequence[str]) -> list[CacheEntry | None]:
        now_ms = int(time.time() * 1000)
        entries = self._tenants[tenant].entries
        found: list[CacheEntry | None] = []
        for entry_id in entry_ids:
            entry = entries.get(entry_id)
            found.append(entry if entry is not None and entry.expires_at_ms > now_ms else None)
        return found

    async def touch(self, tenant: str, entry_id: str, now_ms: int) -> None:
        entries = self._tenants[tenant].entries
        if entry_id in entries:
            entries.move_to_end(entry_id)

    async def put(self, entry: CacheEntry, limits: TenantLimits, now_ms: int) -> list[str]:
        tenant = self._tenants[entry.tenant]
        removed = [
            entry_id for entry_id, stored in list(tenant.entries.items())
            if stored.expires_at_ms <= now_ms and tenant.drop(entry_id) is not None
        ]  # fmt: skip
        tenant.drop(entry.entry_id)
        tenant.entries[entry.entry_id] = entry
        tenant.total_bytes += entry.size_bytes
        while len(tenant.entries) > 1 and (
            len(tenant.entries) > limits.max_entries or tenant.total_bytes > limits.max_bytes
        ):
            oldest = next(iter(tenant.entries))
            tenant.drop(oldest)
            removed.append(oldest)
        return removed

    async def invalidate(self, tenant: str, model: str, entry_id: str) -> list[str]:
        entries = self._tenants[tenant]
        chosen = [
            stored.entry_id
            for stored in entries.entries.values()
            if (not model or stored.model == model)
            and (not entry_id or stored.entry_id == entry_id)
        ]
        for chosen_id in chosen:
            entries.drop(chosen_id)
        return chosen

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._tenants.clear()
