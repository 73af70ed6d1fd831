"""The in-process HNSW index: partitioned search, removal, expiry and rebuild."""

from __future__ import annotations

import numpy as np

from llmmesh_cache.embedders.simulated import SimulatedEmbedder
from llmmesh_cache.entries import CacheEntry
from llmmesh_cache.vector_index import VectorIndex

EMBEDDER = SimulatedEmbedder(64)
NOW_MS = 1_000_000


def entry(entry_id: str, text: str, *, tenant: str = "acme", partition: str = "p") -> CacheEntry:
    return CacheEntry(
        tenant=tenant, entry_id=entry_id, model="m", partition=partition, prompt_text=text,
        answer=b"", vector=EMBEDDER.embed_now([text])[0].tobytes(), expires_at_ms=NOW_MS + 1000,
    )  # fmt: skip


def query(text: str) -> np.ndarray:
    return EMBEDDER.embed_now([text])[0]


def test_search_stays_inside_the_tenant_partition() -> None:
    index = VectorIndex()
    index.add(entry("a", "capital of France", tenant="acme"))
    index.add(entry("b", "capital of France", tenant="globex"))
    index.add(entry("c", "capital of France", partition="other"))
    found = index.search("acme", "p", query("capital of France"), 5, NOW_MS)
    assert [n.entry_id for n in found] == ["a"]
    assert found[0].similarity > 0.99


def test_removed_and_expired_entries_are_not_found() -> None:
    index = VectorIndex()
    for number in range(200):
        index.add(entry(f"e{number}", f"question number {number}"))
    index.remove("acme", [f"e{number}" for number in range(0, 200, 2)])
    found = index.search("acme", "p", query("question number 4"), 10, NOW_MS)
    assert found
    assert all(int(n.entry_id[1:]) % 2 == 1 for n in found)
    assert index.search("acme", "p", query("question number 5"), 10, NOW_MS + 5000) == []
    # Freed slots are reused by new entries.
    index.add(entry("new", "question number 4"))
    assert index.search("acme", "p", query("question number 4"), 1, NOW_MS)[0].entry_id == "new"
    assert len(index) == 101


def test_replace_all_drops_everything_not_reloaded() -> None:
    index = VectorIndex()
    index.add(entry("ghost", "capital of France"))
    index.replace_all([entry("kept", "capital of Spain")])
    assert index.search("acme", "p", query("capital of France"), 5, NOW_MS)[0].entry_id == "kept"
    assert len(index) == 1
