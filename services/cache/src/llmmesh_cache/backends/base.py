"""The contract every entry store fulfils."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from llmmesh_cache.entries import CacheEntry, TenantLimits


class EntryStore(Protocol):
    """Holds entries per tenant with expiry and bounded size, evicting least recently used."""

    async def get(self, tenant: str, entry_ids: Sequence[str]) -> list[CacheEntry | None]:
        """The live entries for the ids, None where an entry is missing or expired."""
        ...

    async def touch(self, tenant: str, entry_id: str, now_ms: int) -> None:
        """Marks an entry as used, so eviction takes it last."""
        ...

    async def put(self, entry: CacheEntry, limits: TenantLimits, now_ms: int) -> list[str]:
        """Stores (or replaces) an entry and returns the ids it evicted or found expired."""
        ...

    async def invalidate(self, tenant: str, model: str, entry_id: str) -> list[str]:
        """Removes a tenant's entries, narrowed by model and entry id when given."""
        ...

    async def ping(self) -> bool:
        """True while the store answers."""
        ...

    async def close(self) -> None: ...
