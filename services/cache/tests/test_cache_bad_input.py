"""Invalid requests get INVALID_ARGUMENT naming every bad field."""

from __future__ import annotations

import grpc
import pytest

from llmmesh.cache.v1 import cache_pb2, cache_service_pb2
from llmmesh.common.v1 import chat_pb2
from llmmesh.runtime.errors import error_details
from llmmesh_cache.testing import CacheNode, NodeFactory, answer, scope


async def rejected_fields(node: CacheNode, method: str, request: object) -> set[str]:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await getattr(node.stub, method)(request)
    details = error_details(failure.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.reason == "INVALID_REQUEST"
    return {violation.field for violation in details.field_violations}


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (cache_service_pb2.LookupRequest(), {"scope"}),
        (
            cache_service_pb2.LookupRequest(scope=cache_pb2.CacheScope(tenant="acme", model="m")),
            {"scope.messages"},
        ),
        (cache_service_pb2.LookupRequest(scope=scope("   ")), {"scope.messages[1].content"}),
        (cache_service_pb2.LookupRequest(scope=scope("hi", tenant="initech")), {"scope.tenant"}),
        (cache_service_pb2.LookupRequest(scope=scope("hi", tenant="")), {"scope.tenant"}),
        (cache_service_pb2.LookupRequest(scope=scope("hi", model="")), {"scope.model"}),
        (
            cache_service_pb2.LookupRequest(scope=scope("hi"), similarity_threshold=1.5),
            {"similarity_threshold"},
        ),
        (
            cache_service_pb2.LookupRequest(scope=scope("hi"), similarity_threshold=-0.1),
            {"similarity_threshold"},
        ),
        (
            cache_service_pb2.LookupRequest(
                scope=cache_pb2.CacheScope(
                    tenant="acme", model="m", messages=[chat_pb2.ChatMessage(content="hi")]
                )
            ),
            {"scope.messages[0].role"},
        ),
    ],
)
async def test_bad_lookups_name_the_bad_fields(
    start_node: NodeFactory, request_: cache_service_pb2.LookupRequest, fields: set[str]
) -> None:
    node = await start_node()
    assert await rejected_fields(node, "Lookup", request_) == fields


@pytest.mark.parametrize(
    ("stored_answer", "fields"),
    [
        (
            answer("The capital", finish=chat_pb2.FINISH_REASON_UNSPECIFIED),
            {"answer.finish_reason"},
        ),
        (answer(), {"answer.chunks"}),
        (answer("", ""), {"answer.chunks"}),
        (None, {"answer"}),
    ],
)
async def test_partial_or_empty_answers_are_rejected_and_never_cached(
    start_node: NodeFactory, stored_answer: cache_pb2.CachedAnswer | None, fields: set[str]
) -> None:
    node = await start_node()
    request = cache_service_pb2.StoreRequest(scope=scope("What is the capital of France?"))
    if stored_answer is not None:
        request.answer.CopyFrom(stored_answer)
    assert await rejected_fields(node, "Store", request) == fields
    reply = await node.lookup(scope("What is the capital of France?"))
    assert not reply.HasField("answer")


async def test_invalidate_needs_a_known_tenant(start_node: NodeFactory) -> None:
    node = await start_node()
    missing = cache_service_pb2.InvalidateRequest()
    unknown = cache_service_pb2.InvalidateRequest(tenant="initech")
    assert await rejected_fields(node, "Invalidate", missing) == {"tenant"}
    assert await rejected_fields(node, "Invalidate", unknown) == {"tenant"}
