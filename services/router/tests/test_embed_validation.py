"""Embed requests checked before any peer is called, and the model that embeds chosen."""

from __future__ import annotations

from typing import Any, cast

import pytest

from llmmesh.policy import Tenant
from llmmesh.router.v1 import router_service_pb2
from llmmesh.runtime.errors import RpcFailure
from llmmesh_router.embedding import EmbeddingPipeline
from llmmesh_router.policy import CatalogModel, RouterPolicy
from llmmesh_router.settings import RouterSettings

CHAT = CatalogModel(name="chat", provider="p", upstream_model="c", capabilities=["chat"])
EMBED = CatalogModel(name="embed", provider="p", upstream_model="e", capabilities=["embeddings"])


def _pipeline(*models: CatalogModel) -> EmbeddingPipeline:
    policy = RouterPolicy(tenants=[Tenant(name="t")], models=list(models))
    settings = RouterSettings(max_prompt_bytes=100, max_list_items=4)
    # No peer is reached by these checks.
    return EmbeddingPipeline(policy, cast(Any, None), settings, cast(Any, None))


def _fields(**fields: Any) -> list[str]:
    request = router_service_pb2.EmbedRequest(**{"model": "embed", "inputs": ["a"], **fields})
    return [v.field for v in _pipeline(EMBED)._violations(request)]


def test_embed_requests_name_every_bad_field() -> None:
    assert _fields() == []
    assert _fields(model="", inputs=[]) == ["model", "inputs"]
    assert _fields(inputs=["a", ""]) == ["inputs[1]"]
    assert _fields(inputs=["x" * 101]) == ["inputs"]
    assert _fields(inputs=["a"] * 5) == ["inputs"]  # over the list bound: nothing else checked
    assert _fields(dimensions=0) == ["dimensions"]
    # Over the size budget too, and named as the field that holds the most text.
    assert _fields(client_request_id="r" * 129) == ["client_request_id", "client_request_id"]


def test_the_model_must_declare_embeddings_and_auto_takes_the_first_that_does() -> None:
    pipeline = _pipeline(CHAT, EMBED)
    assert pipeline._model("auto") is EMBED
    assert pipeline._model("embed") is EMBED
    with pytest.raises(RpcFailure) as caught:
        pipeline._model("chat")
    assert caught.value.reason == "CAPABILITY_UNSUPPORTED"
    assert [v.field for v in caught.value.field_violations] == ["model"]
    with pytest.raises(RpcFailure) as caught:
        _pipeline(CHAT)._model("auto")
    assert caught.value.metadata["capability"] == "embeddings"
