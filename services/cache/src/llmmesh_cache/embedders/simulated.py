"""A deterministic embedder from hashed words and character trigrams, for tests and demos.

It needs no model and no peer: texts that share words land close together, which is
enough to exercise semantic lookup, verification and index consistency.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from llmmesh_cache.embedders.names import simulated_embedder_name
from llmmesh_cache.embedders.normalize import normalized_rows

_WORD = re.compile(r"\w+", re.UNICODE)


class SimulatedEmbedder:
    """Feature hashing of lowercased words (weight 1) and their character trigrams (0.5)."""

    def __init__(self, dimensions: int = 384) -> None:
        self._dimensions = dimensions

    @property
    def name(self) -> str:
        return simulated_embedder_name(self._dimensions)

    def _bucket(self, feature: str) -> tuple[int, float]:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self._dimensions, (1.0 if value >> 63 else -1.0)

    def embed_now(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """The embedding, computed synchronously (it takes microseconds)."""
        matrix = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                bucket, sign = self._bucket(word)
                matrix[row, bucket] += sign
                padded = f" {word} "
                for start in range(len(padded) - 2):
                    bucket, sign = self._bucket(padded[start : start + 3])
                    matrix[row, bucket] += 0.5 * sign
        return normalized_rows(matrix)

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return self.embed_now(texts)

    async def close(self) -> None:
        return None
