"""Finds the tenant behind the API key in a call's metadata."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from llmmesh.policy import Tenant, hash_api_key
from llmmesh.runtime.errors import RpcFailure

BEARER_PREFIX = "bearer "


def api_key_from_metadata(metadata: Sequence[tuple[str, str | bytes]]) -> str | None:
    """The key from `authorization: Bearer <key>` or `x-api-key: <key>`."""
    for name, value in metadata:
        text = value.decode() if isinstance(value, bytes) else value
        if name == "authorization" and text.lower().startswith(BEARER_PREFIX):
            return text[len(BEARER_PREFIX) :].strip()
        if name == "x-api-key":
            return text.strip()
    return None


class ApiKeyAuthenticator:
    """Matches keys by their sha256, the only form the policy file holds."""

    def __init__(self, tenants: Sequence[Tenant]) -> None:
        self._tenant_by_key_hash = {
            digest: tenant for tenant in tenants for digest in tenant.api_keys_sha256
        }

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]]) -> Tenant:
        api_key = api_key_from_metadata(metadata)
        if not api_key:
            raise RpcFailure(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing API key: send 'authorization: Bearer <key>' or 'x-api-key'",
                reason="API_KEY_MISSING",
            )
        tenant = self._tenant_by_key_hash.get(hash_api_key(api_key))
        if tenant is None:
            raise RpcFailure(
                grpc.StatusCode.UNAUTHENTICATED, "invalid API key", reason="API_KEY_INVALID"
            )
        return tenant
