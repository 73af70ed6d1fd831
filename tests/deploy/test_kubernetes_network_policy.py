"""NetworkPolicies: the mesh's calls get through, and nothing else reaches a service port."""

from __future__ import annotations

import itertools
from urllib.parse import urlsplit

import pytest

from .manifests import (
    COMBINATIONS,
    Manifests,
    components_of,
    environment,
    find,
    of_kind,
    rendered,
    requires_kustomize,
    with_component,
)
from .network_policy import Endpoint, allows, outside, pod
from .repo_facts import ALLOWED_CALLS, SERVICES, default_health_port, default_port

pytestmark = requires_kustomize

NAMESPACE = "llmmesh"
# A pod of the namespace that is no part of the mesh, one in another namespace, a host
# outside the cluster: none may call an internal service.
STRANGERS = {
    "pod of the namespace": pod("debug-shell", NAMESPACE),
    "pod elsewhere": pod("some-app", "default"),
    "host outside": outside("203.0.113.7"),
}
INTERNAL_SERVICES = ("ratelimiter", "cache", "provider")
REDIS_PORT = 6379
OTLP_PORT = 4317
DNS_PORT = 53
HTTPS_PORT = 443


def mesh_pod(service: str) -> Endpoint:
    return pod(service, NAMESPACE)


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_the_namespace_denies_by_default_in_both_directions(combination: str) -> None:
    deny = find(rendered(combination), "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {}
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert not deny.get("ingress")
    assert not deny.get("egress")


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_call_the_mesh_makes_is_allowed(combination: str) -> None:
    manifests = rendered(combination)
    for caller, callee in ALLOWED_CALLS:
        assert allows(manifests, mesh_pod(caller), mesh_pod(callee), default_port(callee)), (
            f"{caller} → {callee}"
        )


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_internal_services_take_calls_only_from_their_allowed_peers(combination: str) -> None:
    manifests = rendered(combination)
    for caller, callee in itertools.product([*SERVICES, "redis", "jaeger"], INTERNAL_SERVICES):
        if (caller, callee) in ALLOWED_CALLS:
            continue
        assert not allows(manifests, mesh_pod(caller), mesh_pod(callee), default_port(callee)), (
            f"{caller} → {callee}"
        )
    for stranger, callee in itertools.product(STRANGERS.values(), INTERNAL_SERVICES):
        assert not allows(manifests, stranger, mesh_pod(callee), default_port(callee))


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_ingress_rules_to_a_service_port_name_only_allowed_peers(combination: str) -> None:
    # Stricter than probing endpoints: every rule that opens an internal service port
    # names its callers by pod label in the policy's own namespace, nothing broader.
    for policy in of_kind(rendered(combination), "NetworkPolicy"):
        target = policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        if target not in INTERNAL_SERVICES:
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = {entry["port"] for entry in rule["ports"]}
            if ports == {default_health_port(target)}:
                continue
            assert ports == {default_port(target)}
            callers = {
                peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                for peer in rule["from"]
            }
            assert all(set(peer) == {"podSelector"} for peer in rule["from"])
            assert callers == {caller for caller, callee in ALLOWED_CALLS if callee == target}


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_the_kubelet_reaches_every_health_port_and_no_stray_port(combination: str) -> None:
    manifests = rendered(combination)
    kubelet = outside("10.0.0.1")  # a node's address
    for service in SERVICES:
        assert allows(manifests, kubelet, mesh_pod(service), default_health_port(service))
        for other_port in (default_port(service) + 1, 8080, 22):
            assert not allows(manifests, kubelet, mesh_pod(service), other_port)


@pytest.mark.parametrize(
    "combination", [c for c in COMBINATIONS if "router-callers" not in components_of(c)]
)
def test_any_caller_reaches_the_router_which_asks_for_an_api_key(combination: str) -> None:
    manifests = rendered(combination)
    # Backends live outside the mesh's namespace (whose own pods may open nothing by default)
    # or are the HTTP edge.
    for caller in (STRANGERS["pod elsewhere"], STRANGERS["host outside"], mesh_pod("edge")):
        assert allows(manifests, caller, mesh_pod("router"), default_port("router"))
    in_namespace = STRANGERS["pod of the namespace"]
    assert not allows(manifests, in_namespace, mesh_pod("router"), default_port("router"))


@pytest.mark.parametrize("combination", with_component("router-callers"))
def test_router_callers_admits_only_labelled_pods_and_the_edge(combination: str) -> None:
    manifests = rendered(combination)
    router = mesh_pod("router")
    port = default_port("router")
    labelled = {"llmmesh.dev/router-client": "true"}
    assert allows(manifests, pod("backend", "shop", **labelled), router, port)
    assert allows(manifests, pod("backend", NAMESPACE, **labelled), router, port)
    assert allows(manifests, pod("edge", NAMESPACE), router, port)
    assert not allows(manifests, pod("edge", "elsewhere"), router, port)
    for stranger in STRANGERS.values():
        assert not allows(manifests, stranger, router, port)
    assert allows(manifests, outside("10.0.0.1"), router, default_health_port("router"))


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_pod_may_resolve_names(combination: str) -> None:
    manifests = rendered(combination)
    for name in [*SERVICES, "redis", "jaeger"]:
        for protocol in ("UDP", "TCP"):
            assert allows(
                manifests, mesh_pod(name), outside("10.96.0.10"), DNS_PORT, protocol=protocol
            )


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_only_the_provider_reaches_the_model_apis(combination: str) -> None:
    manifests = rendered(combination)
    api = outside("162.159.140.245")
    assert allows(manifests, mesh_pod("provider"), api, HTTPS_PORT)
    for service in ("router", "ratelimiter", "cache"):
        assert not allows(manifests, mesh_pod(service), api, HTTPS_PORT)


@pytest.mark.parametrize("combination", with_component("redis"))
def test_the_in_cluster_redis_serves_only_the_ratelimiter_and_the_cache(combination: str) -> None:
    manifests = rendered(combination)
    redis = mesh_pod("redis")
    for service in SERVICES:
        reaches = allows(manifests, mesh_pod(service), redis, REDIS_PORT)
        assert reaches == (service in ("ratelimiter", "cache")), service
    for stranger in STRANGERS.values():
        assert not allows(manifests, stranger, redis, REDIS_PORT)


@pytest.mark.parametrize("combination", with_component("tracing"))
def test_jaeger_receives_otlp_from_the_four_services_only(combination: str) -> None:
    manifests = rendered(combination)
    jaeger = mesh_pod("jaeger")
    for service in SERVICES:
        assert allows(manifests, mesh_pod(service), jaeger, OTLP_PORT)
    for stranger in STRANGERS.values():
        assert not allows(manifests, stranger, jaeger, OTLP_PORT)


def production() -> Manifests:
    return rendered("overlays/production")


def test_production_reaches_the_clusters_redis_and_collector_in_their_namespaces() -> None:
    manifests = production()
    env = environment(manifests, find(manifests, "Deployment", "router"))
    # <service>.<namespace>.svc.cluster.local
    redis_namespace = str(urlsplit(env["LLMMESH_REDIS_URL"]).hostname).split(".")[1]
    collector_namespace = str(urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"]).hostname).split(".")[1]
    redis = pod("redis", redis_namespace)
    collector = pod("opentelemetry-collector", collector_namespace)
    for service in SERVICES:
        assert allows(manifests, mesh_pod(service), collector, OTLP_PORT)
        reaches_redis = allows(manifests, mesh_pod(service), redis, REDIS_PORT)
        assert reaches_redis == (service in ("ratelimiter", "cache")), service
