"""In-process nearest-neighbour search over embeddings, one HNSW graph per tenant partition.

One graph per (tenant, partition) rather than one filtered graph: a search can only ever
touch the caller's own entries (isolation by construction, and its cost depends only on
the caller's own entry count, so timing reveals nothing about other tenants), and a filter
that keeps a small fraction of a large graph makes HNSW lose recall or fall back to slow
scans. The price is a fixed overhead per partition, which eviction bounds per tenant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING

from llmmesh_cache.entries import CacheEntry

if TYPE_CHECKING:
    from llmmesh_cache.entries import Vector

_INITIAL_CAPACITY = 64


@dataclasses.dataclass(frozen=True)
class IndexSettings:
    """HNSW build and search parameters."""

    m: int = 16
    ef_construction: int = 100
    ef_search: int = 64


@dataclasses.dataclass(frozen=True)
class Neighbour:
    """A candidate entry and its cosine similarity to the query."""

    entry_id: str
    similarity: float


class _Partition:
    """One HNSW graph with the mapping between its integer labels and entry ids."""

    def __init__(self, dimensions: int, settings: IndexSettings, capacity: int) -> None:
        # Imported with the first semantic entry, so an exact-only cache never loads it.
        import hnswlib

        self.dimensions = dimensions
        self._graph = hnswlib.Index(space="cosine", dim=dimensions)
        self._graph.init_index(
            max_elements=max(capacity, _INITIAL_CAPACITY), M=settings.m,
            ef_construction=settings.ef_construction, allow_replace_deleted=True,
        )  # fmt: skip
        self._graph.set_ef(settings.ef_search)
        self._labels: dict[str, int] = {}
        self._entry_ids: dict[int, str] = {}
        self._expires_at_ms: dict[int, int] = {}
        self._deleted = 0
        self._next_label = 0

    def __len__(self) -> int:
        return len(self._labels)

    def add_many(self, entries: list[tuple[str, Vector, int]]) -> None:
        fresh: list[tuple[str, Vector, int]] = []
        for entry_id, vector, expires_at_ms in entries:
            label = self._labels.get(entry_id)
            if label is None:
                fresh.append((entry_id, vector, expires_at_ms))
            else:
                # Same id means the same request stored again: refresh vector and expiry.
                self._graph.add_items(vector[None, :], [label])
                self._expires_at_ms[label] = expires_at_ms
        if not fresh:
            return
        reusable = min(self._deleted, len(fresh))
        needed = self._graph.get_current_count() + len(fresh) - reusable
        if needed > self._graph.get_max_elements():
            self._graph.resize_index(max(needed, 2 * self._graph.get_max_elements()))
        labels = list(range(self._next_label, self._next_label + len(fresh)))
        self._next_label += len(fresh)
        import numpy as np

        vectors = np.stack([vector for _, vector, _ in fresh])
        if reusable:
            self._graph.add_items(vectors[:reusable], labels[:reusable], replace_deleted=True)
            self._deleted -= reusable
        if reusable < len(fresh):
            self._graph.add_items(vectors[reusable:], labels[reusable:])
        for label, (entry_id, _, expires_at_ms) in zip(labels, fresh, strict=True):
            self._labels[entry_id] = label
            self._entry_ids[label] = entry_id
            self._expires_at_ms[label] = expires_at_ms

    def remove(self, entry_id: str) -> bool:
        label = self._labels.pop(entry_id, None)
        if label is None:
            return False
        del self._entry_ids[label]
        del self._expires_at_ms[label]
        self._graph.mark_deleted(label)
        self._deleted += 1
        return True

    def search(self, vector: Vector, k: int, now_ms: int) -> list[Neighbour]:
        wanted = min(k, len(self._labels))
        if wanted == 0:
            return []
        while True:
            try:
                labels, distances = self._graph.knn_query(vector[None, :], k=wanted)
                break
            except RuntimeError:
                # hnswlib cannot always gather k results among deleted slots; ask for fewer.
                if wanted == 1:
                    return []
                wanted = max(1, wanted // 2)
        found = []
        for label, distance in zip(labels[0], distances[0], strict=True):
            label_id = int(label)
            # Expired entries are skipped here; the entry store removes them for good.
            if self._expires_at_ms.get(label_id, 0) > now_ms:
                found.append(Neighbour(self._entry_ids[label_id], 1.0 - float(distance)))
        return found


class VectorIndex:
    """Partitioned HNSW search; every method runs on the event loop's thread."""

    def __init__(self, settings: IndexSettings | None = None) -> None:
        self._settings = settings or IndexSettings()
        self._partitions: dict[tuple[str, str], _Partition] = {}
        # tenant -> entry id -> partition, to remove entries by id alone.
        self._locations: dict[str, dict[str, str]] = {}

    def __len__(self) -> int:
        return sum(len(partition) for partition in self._partitions.values())

    def add(self, entry: CacheEntry) -> None:
        self.add_many([entry])

    def add_many(self, entries: Iterable[CacheEntry]) -> None:
        grouped: dict[tuple[str, str], list[tuple[str, Vector, int]]] = {}
        for entry in entries:
            vector = entry.vector_array()
            if vector is None:
                continue
            previous = self._locations.get(entry.tenant, {}).get(entry.entry_id)
            if previous is not None and previous != entry.partition:
                self.remove(entry.tenant, [entry.entry_id])
            grouped.setdefault((entry.tenant, entry.partition), []).append(
                (entry.entry_id, vector, entry.expires_at_ms)
            )
        for key, batch in grouped.items():
            partition = self._partitions.get(key)
            dimensions = len(batch[0][1])
            if partition is None or partition.dimensions != dimensions:
                partition = _Partition(dimensions, self._settings, capacity=len(batch))
                self._partitions[key] = partition
            partition.add_many([item for item in batch if len(item[1]) == dimensions])
            locations = self._locations.setdefault(key[0], {})
            for entry_id, _, _ in batch:
                locations[entry_id] = key[1]

    def remove(self, tenant: str, entry_ids: Iterable[str]) -> None:
        locations = self._locations.get(tenant)
        if not locations:
            return
        for entry_id in entry_ids:
            partition_name = locations.pop(entry_id, None)
            if partition_name is None:
                continue
            partition = self._partitions[(tenant, partition_name)]
            partition.remove(entry_id)
            if not len(partition):
                del self._partitions[(tenant, partition_name)]

    def search(
        self, tenant: str, partition: str, vector: Vector, k: int, now_ms: int
    ) -> list[Neighbour]:
        """The k nearest live entries of one tenant partition, most similar first."""
        graph = self._partitions.get((tenant, partition))
        if graph is None or graph.dimensions != len(vector):
            return []
        return graph.search(vector, k, now_ms)

    def replace_all(self, entries: Iterable[CacheEntry]) -> None:
        """Swaps in an index built from scratch (a rebuild from the entry store)."""
        fresh = VectorIndex(self._settings)
        fresh.add_many(entries)
        self._partitions, self._locations = fresh._partitions, fresh._locations
