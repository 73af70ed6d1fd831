"""API keys in metadata map to tenants; missing and unknown keys are UNAUTHENTICATED."""

from __future__ import annotations

import grpc
import pytest

from llmmesh.policy import Tenant, hash_api_key
from llmmesh.runtime.errors import RpcFailure
from llmmesh_router.auth import ApiKeyAuthenticator

TENANTS = [
    Tenant(name="acme", api_keys_sha256=[hash_api_key("key-a1"), hash_api_key("key-a2")]),
    Tenant(name="globex", api_keys_sha256=[hash_api_key("key-g")]),
]


@pytest.mark.parametrize(
    ("metadata", "tenant"),
    [
        ([("authorization", "Bearer key-a1")], "acme"),
        ([("authorization", "bearer key-a2")], "acme"),
        ([("x-api-key", "key-g")], "globex"),
        ([("user-agent", "grpc"), ("x-api-key", b"key-g")], "globex"),
    ],
)
def test_key_identifies_its_tenant(metadata: list[tuple[str, str | bytes]], tenant: str) -> None:
    assert ApiKeyAuthenticator(TENANTS).authenticate(metadata).name == tenant


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ([], "API_KEY_MISSING"),
        ([("authorization", "Basic a2V5")], "API_KEY_MISSING"),
        ([("authorization", "Bearer ")], "API_KEY_MISSING"),
        ([("authorization", "Bearer key-unknown")], "API_KEY_INVALID"),
    ],
)
def test_missing_or_unknown_key_is_unauthenticated(
    metadata: list[tuple[str, str | bytes]], reason: str
) -> None:
    with pytest.raises(RpcFailure) as caught:
        ApiKeyAuthenticator(TENANTS).authenticate(metadata)
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.reason == reason
    assert "key-unknown" not in caught.value.message
