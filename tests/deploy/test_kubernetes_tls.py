"""TLS in the manifests: every hop's certificate from a Secret, issued with the right identity,
and the production overlay's client-facing port, Redis and OTLP over TLS."""

from __future__ import annotations

import posixpath
from urllib.parse import urlsplit

import pytest

from .manifests import (
    COMBINATIONS,
    Manifest,
    Manifests,
    container,
    environment,
    find,
    of_kind,
    rendered,
    requires_kustomize,
    volume_holding,
    with_component,
)
from .repo_facts import SERVICES

pytestmark = requires_kustomize

# The keys of a kubernetes.io/tls Secret as cert-manager writes them.
TLS_SECRET_KEYS = {"TLS_CERT_FILE": "tls.crt", "TLS_KEY_FILE": "tls.key", "TLS_CA_FILE": "ca.crt"}
# The Certificate spec fields these manifests may use (cert-manager.io/v1), so a typo fails
# here: kubernetes-validate has no schema for custom resources.
CERTIFICATE_FIELDS = {
    "secretName", "commonName", "uris", "dnsNames", "usages", "duration", "renewBefore",
    "privateKey", "issuerRef", "isCA",
}  # fmt: skip
KEY_USAGES = {"digital signature", "key encipherment", "server auth", "client auth"}


def spiffe_id(service: str) -> str:
    return f"spiffe://llmmesh/{service}"


def no_access_for_others(mode: int) -> bool:
    return mode & 0o007 == 0


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_service_reads_its_mesh_certificate_from_its_own_tls_secret(
    combination: str,
) -> None:
    manifests = rendered(combination)
    for service in SERVICES:
        deployment = find(manifests, "Deployment", service)
        env = environment(manifests, deployment)
        prefix = f"LLMMESH_{service.upper()}_"
        paths = {suffix: env[prefix + suffix] for suffix in TLS_SECRET_KEYS}
        assert [posixpath.basename(p) for p in paths.values()] == list(TLS_SECRET_KEYS.values())
        directories = {posixpath.dirname(path) for path in paths.values()}
        assert len(directories) == 1
        volume, mount = volume_holding(deployment, paths["TLS_CERT_FILE"])
        assert volume["secret"]["secretName"] == f"{service}-tls"
        assert no_access_for_others(volume["secret"]["defaultMode"])
        assert mount["readOnly"] is True
        # A subPath mount would never see a renewed certificate.
        assert "subPath" not in mount


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_container_mounts_its_secrets_read_only(combination: str) -> None:
    for deployment in of_kind(rendered(combination), "Deployment"):
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        for mount in container(deployment).get("volumeMounts", []):
            source = volumes[mount["name"]]
            if "secret" in source or "configMap" in source:
                assert mount.get("readOnly") is True, mount["name"]


def issued_by_cert_manager(manifests: Manifests) -> dict[str, Manifest]:
    """The Certificates, by the Secret each writes."""
    return {
        certificate["spec"]["secretName"]: certificate
        for certificate in of_kind(manifests, "Certificate")
    }


@pytest.mark.parametrize("combination", with_component("cert-manager"))
def test_cert_manager_issues_each_service_its_mesh_identity(combination: str) -> None:
    manifests = rendered(combination)
    certificates = issued_by_cert_manager(manifests)
    for service in SERVICES:
        spec = certificates[f"{service}-tls"]["spec"]
        assert spec["uris"] == [spiffe_id(service)]
        # TLS clients check the name they dialled: the address peers are given.
        assert service in spec["dnsNames"]
        assert {"server auth", "client auth"} <= set(spec["usages"])
        assert spec["privateKey"]["rotationPolicy"] == "Always"
        assert not spec.get("isCA", False)


@pytest.mark.parametrize("combination", with_component("cert-manager"))
def test_cert_manager_objects_use_known_fields_and_resolvable_issuers(combination: str) -> None:
    manifests = rendered(combination)
    issuers = {issuer["metadata"]["name"]: issuer for issuer in of_kind(manifests, "Issuer")}
    certificates = issued_by_cert_manager(manifests)
    for certificate in certificates.values():
        assert certificate["apiVersion"] == "cert-manager.io/v1"
        spec = certificate["spec"]
        assert set(spec) <= CERTIFICATE_FIELDS
        assert set(spec.get("usages", [])) <= KEY_USAGES
        assert spec["issuerRef"]["kind"] == "Issuer"
        assert spec["issuerRef"]["name"] in issuers
    # The services' issuer signs with a CA certificate that cert-manager also issues.
    for service in SERVICES:
        issuer = issuers[certificates[f"{service}-tls"]["spec"]["issuerRef"]["name"]]
        ca_secret = issuer["spec"]["ca"]["secretName"]
        assert certificates[ca_secret]["spec"]["isCA"] is True


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_a_plain_text_port_alone_is_announced_as_h2c(combination: str) -> None:
    # Ports that serve TLS must not tell meshes and gateways to speak cleartext HTTP/2.
    manifests = rendered(combination)
    for service in SERVICES:
        env = environment(manifests, find(manifests, "Deployment", service))
        serves_tls = service != "router" or "LLMMESH_ROUTER_PUBLIC_TLS_CERT_FILE" in env
        protocols = {
            p.get("appProtocol") for p in find(manifests, "Service", service)["spec"]["ports"]
        }
        assert protocols == ({None} if serves_tls else {"kubernetes.io/h2c"}), service


def production() -> Manifests:
    return rendered("overlays/production")


def production_env(service: str) -> dict[str, str]:
    manifests = production()
    return environment(manifests, find(manifests, "Deployment", service))


def assert_mounted_file(service: str, path: str) -> Manifest:
    """The volume `path` lives on, which must be a mounted Secret."""
    volume, _ = volume_holding(find(production(), "Deployment", service), path)
    assert "secret" in volume, f"{path} is not on a Secret"
    return volume


@pytest.mark.parametrize("service", ["ratelimiter", "cache", "router"])
def test_production_reaches_redis_over_tls_checked_against_a_mounted_ca(service: str) -> None:
    env = production_env(service)
    assert urlsplit(env["LLMMESH_REDIS_URL"]).scheme == "rediss"
    assert_mounted_file(service, env["LLMMESH_REDIS_CA_FILE"])


@pytest.mark.parametrize("service", SERVICES)
def test_production_exports_otlp_over_tls_with_mounted_certificates(service: str) -> None:
    env = production_env(service)
    assert urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"]).scheme == "https"
    assert env["OTEL_SDK_DISABLED"] == "false"
    for variable in (
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    ):
        assert_mounted_file(service, env[variable])


def test_production_serves_the_routers_clients_over_tls_from_its_own_secret() -> None:
    env = production_env("router")
    volumes = {
        assert_mounted_file("router", env[variable])["secret"]["secretName"]
        for variable in (
            "LLMMESH_ROUTER_PUBLIC_TLS_CERT_FILE",
            "LLMMESH_ROUTER_PUBLIC_TLS_KEY_FILE",
        )
    }
    # Not the mesh identity: backends check the name they dial, peers the mesh identity.
    assert volumes == {"router-public-tls"}
