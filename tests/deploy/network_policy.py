"""Decides, as the NetworkPolicy API defines it, whether one endpoint may connect to another.

A pod that no policy selects for a direction is open in that direction; a selected pod
admits what any rule of any selecting policy admits. A rule without peers admits every
peer, a rule without ports every port; a podSelector peer means pods of the policy's
namespace, a namespaceSelector one pods of the namespaces it selects, both together pods
that match both, and an ipBlock addresses outside the cluster. Written by hand because no
Python library evaluates policies offline; the rendered manifests are the input.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

Manifest = dict[str, Any]

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A pod (its labels and namespace) or, with an address only, a host outside the cluster."""

    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    namespace: str | None = None
    address: str | None = None

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None


def pod(name: str, namespace: str, **labels: str) -> Endpoint:
    """A pod labelled as the manifests label theirs: app.kubernetes.io/name=<name>."""
    return Endpoint({"app.kubernetes.io/name": name, **labels}, namespace)


def outside(address: str) -> Endpoint:
    return Endpoint(address=address)


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) matches `labels`."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if other.address is None:
            return False
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other.address)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    if not other.is_pod:
        return False
    if "namespaceSelector" in peer:
        namespace_labels = {NAMESPACE_NAME_LABEL: str(other.namespace)}
        if not selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector", {}), other.labels)


def _port_matches(entries: list[Mapping[str, Any]] | None, port: int, protocol: str) -> bool:
    if not entries:
        return True
    for entry in entries:
        if entry.get("protocol", "TCP") != protocol:
            continue
        if "port" not in entry:
            return True
        first = entry["port"]
        if not isinstance(first, int):
            raise ValueError(f"named port {first!r}: write port numbers in the policies")
        if first <= port <= entry.get("endPort", first):
            return True
    return False


def _applies(policy: Manifest, endpoint: Endpoint, direction: str, namespace: str) -> bool:
    spec = policy["spec"]
    types = spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"])
    return (
        endpoint.namespace == policy["metadata"].get("namespace", namespace)
        and direction in types
        and selects(spec["podSelector"], endpoint.labels)
    )


def _admitted(
    policies: Iterable[Manifest],
    direction: str,
    subject: Endpoint,
    other: Endpoint,
    port: int,
    protocol: str,
    namespace: str,
) -> bool:
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [p for p in policies if _applies(p, subject, direction, namespace)]
    if not selecting:
        return True
    for policy in selecting:
        policy_namespace = policy["metadata"].get("namespace", namespace)
        for rule in policy["spec"].get(rules_key) or []:
            peers = rule.get(peers_key)
            if not _port_matches(rule.get("ports"), port, protocol):
                continue
            if not peers or any(_peer_matches(peer, policy_namespace, other) for peer in peers):
                return True
    return False


def allows(
    manifests: Iterable[Manifest],
    source: Endpoint,
    destination: Endpoint,
    port: int,
    *,
    protocol: str = "TCP",
    namespace: str = "llmmesh",
) -> bool:
    """Whether `source` may open a connection to `destination` on `port`: the source's
    egress and the destination's ingress must both admit it. Objects without a namespace
    are taken to live in `namespace`."""
    policies = [m for m in manifests if m["kind"] == "NetworkPolicy"]
    egress = not source.is_pod or _admitted(
        policies, "Egress", source, destination, port, protocol, namespace
    )
    ingress = not destination.is_pod or _admitted(
        policies, "Ingress", destination, source, port, protocol, namespace
    )
    return egress and ingress
