"""The contract every embedder fulfils."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


class EmbedderUnavailableError(Exception):
    """The embedder could not produce vectors right now (peer down, model not installed)."""


class Embedder(Protocol):
    """Maps texts to unit-length float32 vectors in one fixed space."""

    @property
    def name(self) -> str:
        """Identifies the vector space; vectors of different names are never compared."""
        ...

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One row per text, L2-normalized. Raises EmbedderUnavailableError."""
        ...

    async def close(self) -> None: ...
