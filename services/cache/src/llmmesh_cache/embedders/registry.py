"""The embedders a policy may name, built on first use and shared by all tenants."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from llmmesh_cache.embedders.base import Embedder


@dataclasses.dataclass(frozen=True)
class EmbedderKind:
    """An embedder's vector space name, known up front, and how to build the embedder."""

    name: str
    build: Callable[[], Embedder]


class EmbedderRegistry:
    """Resolves a policy's embedder choice ("default" means the service setting)."""

    def __init__(self, kinds: dict[str, EmbedderKind], default_kind: str) -> None:
        if default_kind not in kinds:
            raise ValueError(f"no embedder named {default_kind!r}")
        self._kinds = kinds
        self._default_kind = default_kind
        self._built: dict[str, Embedder] = {}

    def kind(self, choice: str) -> str:
        return self._default_kind if choice == "default" else choice

    def name(self, choice: str) -> str:
        """The vector space the choice embeds into, without building its embedder."""
        return self._kinds[self.kind(choice)].name

    def get(self, choice: str) -> Embedder:
        kind = self.kind(choice)
        embedder = self._built.get(kind)
        if embedder is None:
            embedder = self._kinds[kind].build()
            if embedder.name != self._kinds[kind].name:
                raise RuntimeError(f"embedder {kind!r} names its space {embedder.name!r}")
            self._built[kind] = embedder
        return embedder

    async def close(self) -> None:
        for embedder in self._built.values():
            await embedder.close()
        self._built.clear()
