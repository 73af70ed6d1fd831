"""Who a caller is: the mesh identity in its client certificate, and allow-lists of them.

An identity is the SPIFFE-style URI in the certificate's subject alternative names
(`spiffe://llmmesh/router`); a certificate without a URI SAN is known by its common name.
In an allow-list a bare name (`router`) stands for `spiffe://llmmesh/router` and for a
certificate whose common name is `router`; any other entry must match exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

TRUST_DOMAIN = "llmmesh"
# The properties gRPC core puts in a TLS peer's auth context, in the order they are trusted:
# the SPIFFE ID (set when the certificate has exactly one), any URI SAN, the common name.
_IDENTITY_PROPERTIES = ("peer_spiffe_id", "peer_uri", "x509_common_name")


def spiffe_id(service: str) -> str:
    """The identity the mesh's certificates give a service."""
    return f"spiffe://{TRUST_DOMAIN}/{service}"


def certificate_identity(auth_context: Mapping[str, Sequence[bytes]]) -> str | None:
    """The caller's identity from a call's auth context; None without a client certificate."""
    for name in _IDENTITY_PROPERTIES:
        values = auth_context.get(name)
        if values:
            return values[0].decode(errors="replace")
    return None


def split_identities(listed: str) -> tuple[str, ...]:
    """`router, cache` as ("router", "cache"): the form of LLMMESH_<SERVICE>_ALLOWED_PEERS."""
    return tuple(entry.strip() for entry in listed.split(",") if entry.strip())


@dataclasses.dataclass(frozen=True)
class AllowedPeers:
    """The identities an allow-list admits, with bare names expanded to SPIFFE IDs."""

    identities: frozenset[str]

    @classmethod
    def of(cls, entries: Iterable[str]) -> AllowedPeers:
        identities = set()
        for entry in entries:
            identities.add(entry)
            if "://" not in entry:
                identities.add(spiffe_id(entry))
        return cls(frozenset(identities))

    def allows(self, identity: str) -> bool:
        return identity in self.identities


@dataclasses.dataclass(frozen=True)
class CallerRules:
    """Which peers may call each RPC of a service: `by_method` names the exceptions
    (by the RPC's short name, `Embed`), `default` covers every other method."""

    default: tuple[str, ...]
    by_method: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def allowed(self, method_name: str) -> AllowedPeers:
        return AllowedPeers.of(self.by_method.get(method_name, self.default))

    def describe(self) -> str:
        """For the start log line: `router (Embed: router, cache)`."""
        exceptions = "; ".join(f"{name}: {', '.join(ids)}" for name, ids in self.by_method.items())
        default = ", ".join(self.default) or "nobody"
        return f"{default} ({exceptions})" if exceptions else default
