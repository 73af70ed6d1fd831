"""docker-compose.yml: valid Compose, and wired to the services' real settings and ports."""

from __future__ import annotations

import importlib.resources
import json
import re
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from .compose_model import (
    COMPOSE_FILE,
    ENV_FILE,
    include_paths,
    interpolate,
    load_project,
    load_raw,
)
from .repo_facts import (
    ALLOWED_CALLS,
    REPO_ROOT,
    SERVICES,
    default_health_port,
    default_port,
    dotenv,
    service_variables,
    stop_time_s,
)

REDIS_PORT = 6379
JAEGER_OTLP_GRPC_PORT = 4317
JAEGER_UI_PORT = 16686
CERT_STEP = "mesh-certs"
CERT_STEP_DOCKERFILE = "deploy/tls/Dockerfile"
HEALTH_CHECK_SCRIPT = "/opt/llmmesh/grpc_health_check.py"
TLS_FILES = {"TLS_CERT_FILE": "tls.crt", "TLS_KEY_FILE": "tls.key", "TLS_CA_FILE": "ca.crt"}


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return load_project()


def environment(project: dict[str, Any], service: str) -> dict[str, str]:
    env: dict[str, str] = project["services"][service].get("environment", {})
    assert isinstance(env, dict), f"{service}: write environment as a mapping"
    return {name: str(value) for name, value in env.items()}


def container_ports(definition: dict[str, Any]) -> set[int]:
    """Ports a service offers inside the compose network: `expose` and published targets."""
    ports = {int(str(port)) for port in definition.get("expose", [])}
    ports.update(int(str(port).rsplit(":", 1)[-1]) for port in definition.get("ports", []))
    return ports


def compose_schema() -> dict[str, Any]:
    # The Compose specification's own schema, as vendored by check-jsonschema.
    schema = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    loaded: dict[str, Any] = json.loads((schema / "compose-spec.json").read_text())
    return loaded


@pytest.mark.parametrize(
    "path", [COMPOSE_FILE, *include_paths(load_raw(COMPOSE_FILE))], ids=lambda p: p.name
)
def test_compose_files_follow_the_compose_specification(path: Any) -> None:
    document = interpolate(load_raw(path), dotenv(ENV_FILE))
    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []


def test_schema_check_rejects_what_compose_rejects() -> None:
    broken = {"services": {"router": {"image": "llmmesh/router", "depends_on": {"cache": {}}}}}
    broken["services"]["router"]["restart_policy"] = "always"
    assert not jsonschema.Draft202012Validator(compose_schema()).is_valid(broken)


def test_every_variable_the_compose_files_use_is_in_dot_env() -> None:
    # A variable without a value would silently become "" in `docker compose up`.
    for path in [COMPOSE_FILE, *include_paths(load_raw(COMPOSE_FILE))]:
        interpolate(load_raw(path), dotenv(ENV_FILE))


def test_project_runs_the_four_services_redis_jaeger_and_the_certificate_step(
    project: dict[str, Any],
) -> None:
    assert set(project["services"]) == {*SERVICES, "redis", "jaeger", CERT_STEP}


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_builds_from_its_own_dockerfile(project: dict[str, Any], service: str) -> None:
    definition = project["services"][service]
    build = definition["build"]
    assert (COMPOSE_FILE.parent / build["context"]).resolve() == REPO_ROOT
    assert build["dockerfile"] == f"services/{service}/Dockerfile"
    assert (REPO_ROOT / build["dockerfile"]).is_file()
    assert definition["image"].rpartition(":")[0].endswith(f"/{service}")


@pytest.mark.parametrize("service", SERVICES)
def test_llmmesh_variables_are_fields_of_the_services_settings(
    project: dict[str, Any], service: str
) -> None:
    set_here = {name for name in environment(project, service) if name.startswith("LLMMESH_")}
    assert set_here - service_variables(service) == set()


@pytest.mark.parametrize("service", SERVICES)
def test_services_read_only_llmmesh_and_otel_variables(
    project: dict[str, Any], service: str
) -> None:
    for name in environment(project, service):
        assert name.startswith(("LLMMESH_", "OTEL_")), name


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_offers_its_settings_default_port(
    project: dict[str, Any], service: str
) -> None:
    assert container_ports(project["services"][service]) == {default_port(service)}


def peer_addresses(project: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    """(caller, variable, host, port) of every `*_ADDRESS` a service is given."""
    found = []
    for service in SERVICES:
        for name, value in environment(project, service).items():
            if name.endswith("_ADDRESS"):
                host, _, port = value.rpartition(":")
                found.append((service, name, host, int(port)))
    return found


def test_router_is_given_all_three_peers(project: dict[str, Any]) -> None:
    hosts = {host for caller, _, host, _ in peer_addresses(project) if caller == "router"}
    assert hosts == {"ratelimiter", "cache", "provider"}


def test_peer_addresses_name_compose_services_on_their_settings_ports(
    project: dict[str, Any],
) -> None:
    for caller, variable, host, port in peer_addresses(project):
        assert host in SERVICES, f"{caller} {variable}: {host} is no llmmesh service"
        assert port == default_port(host), f"{caller} {variable}: {host} listens elsewhere"


def redis_users(project: dict[str, Any]) -> list[str]:
    return [s for s in SERVICES if "LLMMESH_REDIS_URL" in environment(project, s)]


def test_ratelimiter_and_cache_share_the_compose_redis(project: dict[str, Any]) -> None:
    assert sorted(redis_users(project)) == ["cache", "ratelimiter"]
    for service in redis_users(project):
        url = urlsplit(environment(project, service)["LLMMESH_REDIS_URL"])
        assert (url.scheme, url.hostname, url.port) == ("redis", "redis", REDIS_PORT)
    assert REDIS_PORT in container_ports(project["services"]["redis"])


def test_redis_is_redis_7_on_alpine(project: dict[str, Any]) -> None:
    assert re.fullmatch(r"redis:7(\.\d+)*-alpine", project["services"]["redis"]["image"])


def test_services_start_after_the_peers_they_call_are_healthy(project: dict[str, Any]) -> None:
    needs = [(caller, host) for caller, _, host, _ in peer_addresses(project)]
    needs += [(service, "redis") for service in redis_users(project)]
    for caller, peer in needs:
        condition = project["services"][caller]["depends_on"][peer]["condition"]
        assert condition == "service_healthy", f"{caller} starts before {peer} is healthy"


def test_every_awaited_service_has_a_health_check(project: dict[str, Any]) -> None:
    for definition in project["services"].values():
        for peer, dependency in definition.get("depends_on", {}).items():
            if dependency["condition"] == "service_healthy":
                assert project["services"][peer]["healthcheck"]["test"]


def test_jaeger_v2_receives_otlp_grpc_and_serves_its_ui(project: dict[str, Any]) -> None:
    jaeger = project["services"]["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/jaeger:2.")
    assert {JAEGER_OTLP_GRPC_PORT, JAEGER_UI_PORT} <= container_ports(jaeger)


@pytest.mark.parametrize("service", SERVICES)
def test_services_export_traces_to_jaeger_over_otlp_grpc(
    project: dict[str, Any], service: str
) -> None:
    env = environment(project, service)
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (endpoint.hostname, endpoint.port) == ("jaeger", JAEGER_OTLP_GRPC_PORT)
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert env["OTEL_SERVICE_NAME"] == f"llmmesh-{service}"


def test_only_the_router_is_published_on_the_host(project: dict[str, Any]) -> None:
    published = [s for s in SERVICES if project["services"][s].get("ports")]
    assert published == ["router"]


@pytest.mark.parametrize("service", ["router", "jaeger"])
def test_published_ports_listen_on_the_hosts_loopback_only(
    project: dict[str, Any], service: str
) -> None:
    for port in project["services"][service]["ports"]:
        assert str(port).startswith("127.0.0.1:"), port


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"write durations in whole seconds: {duration}"
    return float(match[1])


@pytest.mark.parametrize("service", SERVICES)
def test_stop_grace_period_outlasts_the_services_drain(
    project: dict[str, Any], service: str
) -> None:
    env = environment(project, service)
    assert seconds(project["services"][service]["stop_grace_period"]) > stop_time_s(service, env)


@pytest.mark.parametrize("service", SERVICES)
def test_service_containers_are_read_only_and_unprivileged(
    project: dict[str, Any], service: str
) -> None:
    definition = project["services"][service]
    assert definition["read_only"] is True
    assert definition["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in definition["security_opt"]


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_listens_on_every_interface_of_its_container(
    project: dict[str, Any], service: str
) -> None:
    # The services listen on loopback unless told otherwise, which no peer reaches.
    assert environment(project, service)[f"LLMMESH_{service.upper()}_LISTEN_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("service", SERVICES)
def test_health_checks_ask_the_plain_text_health_port(
    project: dict[str, Any], service: str
) -> None:
    # The service port takes only peers with certificates; the health port takes anyone.
    health_port = int(environment(project, service)[f"LLMMESH_{service.upper()}_HEALTH_PORT"])
    assert health_port == default_health_port(service)
    assert health_port != default_port(service)
    test = project["services"][service]["healthcheck"]["test"]
    assert test == ["CMD", "python", HEALTH_CHECK_SCRIPT, f"127.0.0.1:{health_port}"]
    assert health_port not in container_ports(project["services"][service])


def named_volumes(definition: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Named volumes of a service: name → (mount path, options)."""
    mounts = {}
    for entry in definition.get("volumes", []):
        source, target, *options = str(entry).split(":")
        if not source.startswith((".", "/")):
            mounts[source] = (target, options[0] if options else "rw")
    return mounts


def test_a_one_shot_step_makes_the_certificates_without_a_network(
    project: dict[str, Any],
) -> None:
    step = project["services"][CERT_STEP]
    assert step["build"]["dockerfile"] == CERT_STEP_DOCKERFILE
    assert (REPO_ROOT / CERT_STEP_DOCKERFILE).is_file()
    assert step["restart"] == "no"
    assert step["network_mode"] == "none"
    assert step["read_only"] is True
    assert step["cap_drop"] == ["ALL"]
    assert not step.get("ports")
    outputs = named_volumes(step)
    assert {target for target, _ in outputs.values()} == {f"/out/{s}" for s in SERVICES}


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_starts_after_the_certificates_and_mounts_only_its_own(
    project: dict[str, Any], service: str
) -> None:
    definition = project["services"][service]
    condition = definition["depends_on"][CERT_STEP]["condition"]
    assert condition == "service_completed_successfully"
    outputs = named_volumes(project["services"][CERT_STEP])
    (own,) = [name for name, (target, _) in outputs.items() if target == f"/out/{service}"]
    mounted = named_volumes(definition)
    assert set(mounted) & set(outputs) == {own}
    target, options = mounted[own]
    assert options == "ro"
    env = environment(project, service)
    for suffix, file_name in TLS_FILES.items():
        assert env[f"LLMMESH_{service.upper()}_{suffix}"] == f"{target}/{file_name}"


def networks_of(project: dict[str, Any], service: str) -> set[str]:
    networks = project["services"][service].get("networks", ["default"])
    return set(networks)


def is_internal(project: dict[str, Any], network: str) -> bool:
    return bool(project.get("networks", {}).get(network, {}).get("internal", False))


def test_redis_shares_a_network_only_with_the_ratelimiter_and_the_cache(
    project: dict[str, Any],
) -> None:
    redis_networks = networks_of(project, "redis")
    assert all(is_internal(project, network) for network in redis_networks)
    neighbours = {
        name
        for name in project["services"]
        if name != "redis" and networks_of(project, name) & redis_networks
    }
    assert neighbours == {"ratelimiter", "cache"}


def test_only_the_router_and_the_provider_have_a_network_way_out(
    project: dict[str, Any],
) -> None:
    # The router for its published port, the provider for the model APIs; neither shares
    # that network with another service of the mesh.
    for service in [*SERVICES, "redis"]:
        outward = {n for n in networks_of(project, service) if not is_internal(project, n)}
        assert bool(outward) == (service in ("router", "provider")), service
        for other in SERVICES:
            if other != service:
                assert not outward & networks_of(project, other), f"{service} and {other}"


@pytest.mark.parametrize("caller", SERVICES)
def test_every_call_the_mesh_makes_has_a_network(project: dict[str, Any], caller: str) -> None:
    for callee in [callee for c, callee in ALLOWED_CALLS if c == caller]:
        assert networks_of(project, caller) & networks_of(project, callee), f"{caller} → {callee}"
    for service in SERVICES:
        assert networks_of(project, service) & networks_of(project, "jaeger"), service
