"""The certificate step of docker compose: its image, and the certificates its script makes,
used for real in an mTLS handshake between two gRPC endpoints."""

from __future__ import annotations

import datetime
import importlib.util
import json
import pathlib
import shlex
import stat
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from types import ModuleType

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from dockerfile_parse import DockerfileParser

from .dockerignore import is_ignored, read_rules
from .repo_facts import REPO_ROOT, SERVICES, dotenv

SCRIPT = REPO_ROOT / "deploy" / "tls" / "make_mesh_certs.py"
DOCKERFILE = REPO_ROOT / "deploy" / "tls" / "Dockerfile"
SERVICE_USER = "10001:10001"
FILES = {"tls.crt": 0o444, "tls.key": 0o400, "ca.crt": 0o444}
WHO_AM_I = "/llmmesh.test.Identity/WhoAmI"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_mesh_certs", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: dataclasses look their module up while the class is made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


certs = load_script()


@pytest.fixture
def out(tmp_path: pathlib.Path) -> pathlib.Path:
    directory = tmp_path / "certs"
    assert certs.make_mesh_certs(directory, namespace="llmmesh") is True
    return directory


def certificate(out: pathlib.Path, service: str, name: str = "tls.crt") -> x509.Certificate:
    return x509.load_pem_x509_certificate((out / service / name).read_bytes())


def contents(out: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_each_service_gets_the_three_files_of_a_tls_secret_and_nothing_else(
    out: pathlib.Path,
) -> None:
    # No file holds the CA's private key: nothing on disk can mint another identity.
    assert sorted(path.name for path in out.iterdir()) == sorted(SERVICES)
    for service in SERVICES:
        files = {path.name: stat.S_IMODE(path.stat().st_mode) for path in (out / service).iterdir()}
        assert files == FILES


@pytest.mark.parametrize("service", SERVICES)
def test_a_certificate_names_its_service_as_mesh_identity_and_dns_name(
    out: pathlib.Path, service: str
) -> None:
    issued = certificate(out, service)
    names = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"spiffe://llmmesh/{service}"
    ]
    assert names.get_values_for_type(x509.DNSName) == [
        service,
        f"{service}.llmmesh.svc",
        f"{service}.llmmesh.svc.cluster.local",
    ]
    usages = issued.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert issued.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    issued.verify_directly_issued_by(certificate(out, service, "ca.crt"))


def test_every_service_trusts_the_one_ca_that_signed_them_all(out: pathlib.Path) -> None:
    bundles = {(out / service / "ca.crt").read_bytes() for service in SERVICES}
    assert len(bundles) == 1
    ca = certificate(out, "router", "ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_a_second_run_keeps_certificates_that_are_still_good(out: pathlib.Path) -> None:
    before = contents(out)
    assert certs.make_mesh_certs(out, namespace="llmmesh") is False
    assert contents(out) == before


def test_certificates_near_their_end_are_replaced_all_together(out: pathlib.Path) -> None:
    before = contents(out)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=70)
    assert certs.make_mesh_certs(out, namespace="llmmesh", now=later) is True
    after = contents(out)
    assert all(after[name] != before[name] for name in before)


@pytest.mark.parametrize(
    "damage",
    ["missing key", "other key", "other names"],
)
def test_one_damaged_service_renews_the_whole_set_under_a_new_ca(
    out: pathlib.Path, tmp_path: pathlib.Path, damage: str
) -> None:
    old_ca = (out / "router" / "ca.crt").read_bytes()
    if damage == "missing key":
        (out / "cache" / "tls.key").unlink()
    elif damage == "other key":
        certs.make_mesh_certs(tmp_path / "other")
        (out / "cache" / "tls.key").unlink()
        (out / "cache" / "tls.key").write_bytes((tmp_path / "other/cache/tls.key").read_bytes())
    assert certs.make_mesh_certs(out, namespace=None if damage == "other names" else "llmmesh")
    new_cas = {(out / service / "ca.crt").read_bytes() for service in SERVICES}
    assert len(new_cas) == 1
    assert new_cas != {old_ca}


def test_the_command_line_reports_what_it_did_and_refuses_a_renewal_past_the_validity(
    tmp_path: pathlib.Path,
) -> None:
    def run(*arguments: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(SCRIPT), *arguments]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    first, second = run(str(tmp_path / "c")), run(str(tmp_path / "c"))
    assert (first.returncode, second.returncode) == (0, 0)
    assert first.stdout.startswith("wrote new")
    assert second.stdout.startswith("kept the")
    refused = run(str(tmp_path / "d"), "--days", "10", "--renew-within-days", "10")
    assert refused.returncode == 1
    assert "--renew-within-days" in refused.stderr


def credentials(out: pathlib.Path, service: str) -> tuple[bytes, bytes, bytes]:
    directory = out / service
    return tuple(  # type: ignore[return-value]
        (directory / name).read_bytes() for name in ("tls.key", "tls.crt", "ca.crt")
    )


@pytest.fixture
def cache_server(out: pathlib.Path) -> Iterator[int]:
    """A gRPC server with the cache's certificate that requires client certificates and
    answers with the URI SAN of the caller's."""

    def who_am_i(_request: bytes, context: grpc.ServicerContext) -> bytes:
        names = context.auth_context().get("x509_subject_alternative_name", [])
        return json.dumps([name.decode() for name in names]).encode()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.unary_unary_rpc_method_handler(who_am_i)
    service, method = WHO_AM_I.strip("/").split("/")
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(service, {method: handler})]
    )
    key, chain, ca = credentials(out, "cache")
    port = server.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials([(key, chain)], root_certificates=ca, require_client_auth=True),
    )
    server.start()
    yield port
    server.stop(grace=None)


def call(port: int, channel_credentials: grpc.ChannelCredentials, dialled_name: str) -> list[str]:
    # The address is 127.0.0.1; the name is the one a peer would dial (cache:50053).
    options = [("grpc.ssl_target_name_override", dialled_name)]
    with grpc.secure_channel(f"127.0.0.1:{port}", channel_credentials, options) as channel:
        answer = channel.unary_unary(WHO_AM_I)(b"", timeout=10)
    names: list[str] = json.loads(answer)
    return names


def test_the_router_certificate_opens_an_mtls_call_to_the_cache(
    out: pathlib.Path, cache_server: int
) -> None:
    key, chain, ca = credentials(out, "router")
    router = grpc.ssl_channel_credentials(ca, private_key=key, certificate_chain=chain)
    names = call(cache_server, router, "cache")
    assert "spiffe://llmmesh/router" in names


def test_without_a_client_certificate_the_handshake_fails(
    out: pathlib.Path, cache_server: int
) -> None:
    _, _, ca = credentials(out, "router")
    with pytest.raises(grpc.RpcError) as refused:
        call(cache_server, grpc.ssl_channel_credentials(ca), "cache")
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_dialling_another_service_rejects_the_caches_certificate(
    out: pathlib.Path, cache_server: int
) -> None:
    key, chain, ca = credentials(out, "router")
    router = grpc.ssl_channel_credentials(ca, private_key=key, certificate_chain=chain)
    with pytest.raises(grpc.RpcError) as refused:
        call(cache_server, router, "provider")
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def parsed_dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


def instructions(name: str) -> list[str]:
    return [str(i["value"]) for i in parsed_dockerfile().structure if i["instruction"] == name]


def test_the_image_runs_the_script_as_the_services_user_on_the_python_base() -> None:
    assert parsed_dockerfile().parent_images == [dotenv(REPO_ROOT / ".env")["PYTHON_IMAGE"]]
    assert instructions("USER") == [SERVICE_USER]
    entrypoint = json.loads(instructions("ENTRYPOINT")[0])
    copied = {shlex.split(value)[-1] for value in instructions("COPY")}
    assert entrypoint[-1] in copied
    assert entrypoint[0] == "python"


def test_the_image_installs_cryptography_at_its_pinned_version() -> None:
    (install,) = [command for command in instructions("RUN") if "pip install" in command]
    assert "--constraint /tmp/constraints.txt cryptography" in install
    pins = (REPO_ROOT / "constraints.txt").read_text().splitlines()
    assert any(line.startswith("cryptography==") for line in pins)


def test_the_image_copies_only_what_the_build_context_keeps() -> None:
    rules = read_rules(REPO_ROOT / ".dockerignore")
    for value in instructions("COPY"):
        source = shlex.split(value)[0]
        assert (REPO_ROOT / source).exists(), source
        assert not is_ignored(source, rules), f"{source} is in .dockerignore"


def test_the_image_gives_the_service_user_every_output_directory() -> None:
    # A new volume takes the owner of the image's directory it is mounted on.
    (prepare,) = [command for command in instructions("RUN") if "mkdir" in command]
    for service in SERVICES:
        assert f"/out/{service}" in prepare.split()
    assert f"chown -R {SERVICE_USER} /out" in prepare
    assert json.loads(instructions("CMD")[0]) == ["/out"]
