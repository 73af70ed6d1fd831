"""API keys in metadata map to tenants; missing, unknown and ambiguous credentials are
UNAUTHENTICATED, and binary headers never break authentication."""

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
        ([("user-agent", "grpc"), ("x-api-key", "key-g")], "globex"),
        # A binary header that is not UTF-8, before the key (it once gave INTERNAL).
        ([("trace-bin", b"\xff\xfe\x00"), ("authorization", "Bearer key-a1")], "acme"),
        ([("x-api-key-bin", b"key-g"), ("x-api-key", "key-g")], "globex"),
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
        ([("x-api-key", b"key-g")], "API_KEY_MISSING"),  # binary values are never keys
        # More than one credential, whoever's: refused rather than "the first one wins".
        ([("authorization", "Bearer key-a1"), ("x-api-key", "key-g")], "API_KEY_AMBIGUOUS"),
        ([("authorization", "Bearer key-a1"), ("authorization", "Bearer key-g")],
         "API_KEY_AMBIGUOUS"),
        ([("x-api-key", "key-a1"), ("x-api-key", "key-a2")], "API_KEY_AMBIGUOUS"),
        ([("x-api-key", "key-a1"), ("x-api-key", "key-a1")], "API_KEY_AMBIGUOUS"),
        ([("authorization", "Basic a2V5"), ("x-api-key", "key-g")], "API_KEY_AMBIGUOUS"),
    ],
)  # fmt: skip
def test_missing_unknown_or_ambiguous_credentials_are_unauthenticated(
    metadata: list[tuple[str, str | bytes]], reason: str
) -> None:
    with pytest.raises(RpcFailure) as caught:
        ApiKeyAuthenticator(TENANTS).authenticate(metadata)
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.reason == reason
    assert "key-" not in caught.value.message  # no key, known or not, is ever echoed
