"""Finds the tenant behind the API key in a call's metadata.

A call carries exactly one credential: one `authorization: Bearer <key>` or one
`x-api-key` header. Two of them (two headers, or one of each) are refused even when they
agree, so no proxy or client library can slip in a second key that some hop reads first.
Binary (`-bin`) headers are never credentials and are never decoded here.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from llmmesh.policy import Tenant, hash_api_key
from llmmesh.runtime.errors import RpcFailure

BEARER_PREFIX = "bearer "
CREDENTIAL_HEADERS = ("authorization", "x-api-key")
HOW_TO_AUTHENTICATE = "send one 'authorization: Bearer <key>' or one 'x-api-key' header"


def credential_headers(metadata: Sequence[tuple[str, str | bytes]]) -> list[tuple[str, str]]:
    """Every credential header of the call, in order."""
    return [
        (name, value)
        for name, value in metadata
        if name in CREDENTIAL_HEADERS and isinstance(value, str)
    ]


def api_key_from_metadata(metadata: Sequence[tuple[str, str | bytes]]) -> str | None:
    """The key from the call's one credential header; None when there is none or it holds
    no key. Raises UNAUTHENTICATED when the call carries more than one."""
    headers = credential_headers(metadata)
    if len(headers) > 1:
        names = ", ".join(name for name, _ in headers)
        raise RpcFailure(
            grpc.StatusCode.UNAUTHENTICATED,
            f"more than one credential ({names}): {HOW_TO_AUTHENTICATE}",
            reason="API_KEY_AMBIGUOUS",
        )
    if not headers:
        return None
    name, value = headers[0]
    if name == "x-api-key":
        return value.strip()
    if value.lower().startswith(BEARER_PREFIX):
        return value[len(BEARER_PREFIX) :].strip()
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
                f"missing API key: {HOW_TO_AUTHENTICATE}",
                reason="API_KEY_MISSING",
            )
        tenant = self._tenant_by_key_hash.get(hash_api_key(api_key))
        if tenant is None:
            raise RpcFailure(
                grpc.StatusCode.UNAUTHENTICATED, "invalid API key", reason="API_KEY_INVALID"
            )
        return tenant
