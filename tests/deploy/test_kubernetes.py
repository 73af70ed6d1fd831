"""Kubernetes manifests: every combination renders to valid objects that keep the invariants."""

from __future__ import annotations

from urllib.parse import urlsplit

import kubernetes_validate
import pytest

from .manifests import (
    COMBINATIONS,
    Manifests,
    components_of,
    container,
    environment,
    find,
    of_kind,
    rendered,
    requires_kustomize,
    service_port,
    with_component,
)
from .repo_facts import (
    SERVICES,
    default_health_port,
    default_port,
    service_variables,
    stop_time_s,
)

pytestmark = requires_kustomize

KUBERNETES_VERSION = "1.32"
MIN_REPLICAS = 2
# Custom resources kubernetes-validate has no schema for; test_kubernetes_tls checks them.
CUSTOM_API_GROUPS = ("cert-manager.io/",)


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_rendered_object_is_valid_for_kubernetes(combination: str) -> None:
    for manifest in rendered(combination):
        if manifest["apiVersion"].startswith(CUSTOM_API_GROUPS):
            continue
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_each_service_has_a_deployment_service_and_service_account(combination: str) -> None:
    manifests = rendered(combination)
    for service in SERVICES:
        deployment = find(manifests, "Deployment", service)
        pod = deployment["spec"]["template"]["spec"]
        assert find(manifests, "ServiceAccount", pod["serviceAccountName"])
        assert pod["automountServiceAccountToken"] is False
        assert deployment["spec"]["replicas"] >= MIN_REPLICAS
        assert container(deployment)["image"].split(":")[0] == f"llmmesh/{service}"
        selected = find(manifests, "Service", service)["spec"]["selector"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selected.items() <= labels.items(), f"{service}: Service selects no pod"


def test_base_runs_two_replicas_of_each_service() -> None:
    for service in SERVICES:
        assert find(rendered("base"), "Deployment", service)["spec"]["replicas"] == 2


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_peers_have_headless_services_so_dns_round_robin_sees_every_replica(
    combination: str,
) -> None:
    manifests = rendered(combination)
    for deployment in (find(manifests, "Deployment", s) for s in SERVICES):
        for name, value in environment(manifests, deployment).items():
            if not name.endswith("_ADDRESS"):
                continue
            host, _, port = value.rpartition(":")
            service, ports = service_port(manifests, host)
            assert service["spec"].get("clusterIP") == "None", f"{name}: {host} is not headless"
            assert int(port) in ports
            assert int(port) == default_port(host)


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_probes_ask_grpc_health_on_the_plain_text_health_port(combination: str) -> None:
    manifests = rendered(combination)
    for service in SERVICES:
        deployment = find(manifests, "Deployment", service)
        serving = container(deployment)
        health_port = int(environment(manifests, deployment)[health_port_variable(service)])
        assert health_port == default_health_port(service)
        assert serving["ports"] == [
            {"name": "grpc", "containerPort": default_port(service)},
            {"name": "health", "containerPort": health_port},
        ]
        assert serving["readinessProbe"]["grpc"] == {"port": health_port, "service": ""}
        # Liveness must not follow dependency health: the `liveness` service does not.
        assert serving["livenessProbe"]["grpc"] == {"port": health_port, "service": "liveness"}
        # The health port is for the kubelet: the Service offers only the service port.
        service_ports = find(manifests, "Service", service)["spec"]["ports"]
        assert [(p["port"], p["targetPort"]) for p in service_ports] == [
            (default_port(service), "grpc")
        ]


def health_port_variable(service: str) -> str:
    return f"LLMMESH_{service.upper()}_HEALTH_PORT"


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_service_listens_on_the_pod_address_explicitly(combination: str) -> None:
    # The services listen on loopback unless told otherwise, which no probe or peer reaches.
    manifests = rendered(combination)
    for service in SERVICES:
        env = environment(manifests, find(manifests, "Deployment", service))
        assert env[f"LLMMESH_{service.upper()}_LISTEN_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_no_manifest_turns_reflection_on(combination: str) -> None:
    manifests = rendered(combination)
    for service in SERVICES:
        env = environment(manifests, find(manifests, "Deployment", service))
        assert env.get(f"LLMMESH_{service.upper()}_REFLECTION", "false") == "false"


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_container_is_unprivileged_on_a_read_only_root(combination: str) -> None:
    for deployment in of_kind(rendered(combination), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for each in pod["containers"]:
            context = each["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_container_requests_and_limits_cpu_and_memory(combination: str) -> None:
    for deployment in of_kind(rendered(combination), "Deployment"):
        for each in deployment["spec"]["template"]["spec"]["containers"]:
            for bound in ("requests", "limits"):
                assert set(each["resources"][bound]) == {"cpu", "memory"}


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_llmmesh_variables_are_settings_fields(combination: str) -> None:
    manifests = rendered(combination)
    known = set().union(*(service_variables(s) for s in SERVICES))
    for service in SERVICES:
        env = environment(manifests, find(manifests, "Deployment", service))
        own = {n for n in env if n.startswith("LLMMESH_") and n.endswith("_ADDRESS")}
        assert own <= service_variables(service)
        for name in env:
            if name.startswith(f"LLMMESH_{service.upper()}_"):
                assert name in service_variables(service), name
            assert name.startswith(("LLMMESH_", "OTEL_")), name
            assert not name.startswith("LLMMESH_") or name in known, name


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_termination_grace_outlasts_the_drain_and_the_settlements_after_it(
    combination: str,
) -> None:
    manifests = rendered(combination)
    for service in SERVICES:
        deployment = find(manifests, "Deployment", service)
        env = environment(manifests, deployment)
        termination_s = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert termination_s > stop_time_s(service, env)


def redis_urls(manifests: Manifests) -> dict[str, str]:
    return {
        service: environment(manifests, find(manifests, "Deployment", service))["LLMMESH_REDIS_URL"]
        for service in ("ratelimiter", "cache")
    }


def test_without_the_redis_component_backends_are_in_memory() -> None:
    assert set(redis_urls(rendered("base")).values()) == {""}
    assert "LLMMESH_REDIS_URL" in service_variables("ratelimiter")
    assert "LLMMESH_REDIS_URL" in service_variables("cache")


@pytest.mark.parametrize("combination", with_component("redis"))
def test_redis_component_points_ratelimiter_and_cache_at_its_redis(combination: str) -> None:
    manifests = rendered(combination)
    for url in redis_urls(manifests).values():
        parsed = urlsplit(url)
        _, ports = service_port(manifests, str(parsed.hostname))
        assert parsed.port in ports
        assert find(manifests, "Deployment", str(parsed.hostname))


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_tracing_is_on_exactly_when_something_receives_it(combination: str) -> None:
    manifests = rendered(combination)
    for service in SERVICES:
        env = environment(manifests, find(manifests, "Deployment", service))
        assert env["OTEL_SERVICE_NAME"] == f"llmmesh-{service}"
        if env["OTEL_SDK_DISABLED"] == "true":
            assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
            continue
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
        endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        if "tracing" in components_of(combination):
            _, ports = service_port(manifests, str(endpoint.hostname))
            assert endpoint.port in ports
        else:
            assert endpoint.hostname
            assert endpoint.port


@pytest.mark.parametrize("combination", with_component("tracing"))
def test_tracing_component_runs_jaeger_v2_with_otlp_and_ui(combination: str) -> None:
    manifests = rendered(combination)
    jaeger = container(find(manifests, "Deployment", "jaeger"))
    assert jaeger["image"].startswith("jaegertracing/jaeger:2.")
    _, ports = service_port(manifests, "jaeger")
    assert {4317, 16686} <= ports


def test_base_keeps_tracing_off() -> None:
    env = environment(rendered("base"), find(rendered("base"), "Deployment", "router"))
    assert env["OTEL_SDK_DISABLED"] == "true"
