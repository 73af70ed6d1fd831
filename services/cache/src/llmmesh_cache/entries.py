"""A stored cache entry and the limits that bound a tenant's entries."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# numpy is imported only once a vector is used: a cache serving exact lookups alone
# never loads it (numpy and hnswlib take about 11 MiB of an idle service).
Vector: TypeAlias = "npt.NDArray[np.float32]"


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """One complete answer, with what is needed to match and verify it again."""

    tenant: str
    entry_id: str
    model: str
    # Semantic partition (see `scope.scope_keys`); entries are only compared within one.
    partition: str
    # Normalized last user turn; semantic hits are verified against it.
    prompt_text: str
    # The serialized `CachedAnswer`.
    answer: bytes
    # float32 embedding of prompt_text, or b"" when the entry is exact-only.
    vector: bytes
    expires_at_ms: int

    @property
    def size_bytes(self) -> int:
        """What the entry costs against the tenant's byte budget."""
        return len(self.answer) + len(self.prompt_text.encode()) + len(self.vector) + 256

    def vector_array(self) -> Vector | None:
        if not self.vector:
            return None
        import numpy as np

        return np.frombuffer(self.vector, dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class TenantLimits:
    """How many entries and bytes one tenant may hold, and for how long."""

    max_entries: int
    max_bytes: int
    ttl_s: float
