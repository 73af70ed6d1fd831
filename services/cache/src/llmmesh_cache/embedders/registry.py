"""The embedders a policy may name, built on first use and shared by all tenants."""

from __future__ import annotations

from collections.abc import Callable

from llmmesh_cache.embedders.base import Embedder

EmbedderFactory = Callable[[], Embedder]


class EmbedderRegistry:
    """Resolves a policy's embedder choice ("default" means the service setting)."""

    def __init__(self, factories: dict[str, EmbedderFactory], default_kind: str) -> None:
        if default_kind not in factories:
            raise ValueError(f"no embedder named {default_kind!r}")
        self._factories = factories
        self._default_kind = default_kind
        self._built: dict[str, Embedder] = {}

    def kind(self, choice: str) -> str:
        return self._default_kind if choice == "default" else choice

    def get(self, choice: str) -> Embedder:
        kind = self.kind(choice)
        embedder = self._built.get(kind)
        if embedder is None:
            embedder = self._factories[kind]()
            self._built[kind] = embedder
        return embedder

    async def close(self) -> None:
        for embedder in self._built.values():
            await embedder.close()
        self._built.clear()
