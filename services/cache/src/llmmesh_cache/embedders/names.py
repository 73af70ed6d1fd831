"""The name of each embedder's vector space, known without building the embedder.

Cache keys carry it (vectors of different spaces are never compared), so every lookup needs
it; building an embedder imports numpy and its model, which an exact lookup never needs.
"""

from __future__ import annotations

LOCAL_MODEL_NAME = "all-MiniLM-L6-v2"
LOCAL_EMBEDDER_NAME = f"local:{LOCAL_MODEL_NAME}"


def provider_embedder_name(instance: str, model: str) -> str:
    return f"provider:{instance or 'default'}:{model or 'default'}"


def simulated_embedder_name(dimensions: int) -> str:
    return f"simulated-{dimensions}"
