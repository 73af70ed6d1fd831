"""The router's own port serves TLS when given a certificate, and requires backends'
client certificates when given a client CA; its mesh identity toward its peers is apart."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import grpc
import pytest

from llmmesh.common.v1 import chat_pb2
from llmmesh.local_ca import IssuedCertificate, LocalCertificateAuthority
from llmmesh.mesh import Mesh
from llmmesh.router.v1 import router_service_pb2, router_service_pb2_grpc
from llmmesh.testing.mesh import AUTH_METADATA, local_mesh


@pytest.fixture(scope="module")
def public_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCertificateAuthority:
    return LocalCertificateAuthority(tmp_path_factory.mktemp("public-ca"), name="public CA")


@pytest.fixture(scope="module")
def backend(public_ca: LocalCertificateAuthority) -> IssuedCertificate:
    return public_ca.issue("billing-backend", identity="")


@pytest.fixture(scope="module")
def mesh(
    tmp_path_factory: pytest.TempPathFactory, public_ca: LocalCertificateAuthority
) -> Iterator[Mesh]:
    served = public_ca.issue("router-public", identity="")
    env = {
        "LLMMESH_ROUTER_PUBLIC_TLS_CERT_FILE": str(served.cert_file),
        "LLMMESH_ROUTER_PUBLIC_TLS_KEY_FILE": str(served.key_file),
        "LLMMESH_ROUTER_PUBLIC_CLIENT_CA_FILE": str(public_ca.ca_file),
    }
    log_path: pathlib.Path = tmp_path_factory.mktemp("public-tls") / "services.log"
    with local_mesh(log_path, env) as running:
        yield running


def _complete(channel: grpc.Channel) -> grpc.StatusCode:
    try:
        router_service_pb2_grpc.RouterServiceStub(channel).Complete(
            router_service_pb2.CompleteRequest(
                model="auto",
                messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content="hello")],
            ),
            metadata=AUTH_METADATA,
            timeout=10,
        )
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_backends_need_a_client_certificate_from_the_client_ca(
    mesh: Mesh, public_ca: LocalCertificateAuthority, backend: IssuedCertificate
) -> None:
    ca = public_ca.certificate_pem
    with_certificate = grpc.ssl_channel_credentials(
        ca, backend.key_file.read_bytes(), backend.cert_file.read_bytes()
    )
    address = mesh.router_address
    with grpc.insecure_channel(address) as channel:
        assert _complete(channel) == grpc.StatusCode.UNAVAILABLE
    with grpc.secure_channel(address, grpc.ssl_channel_credentials(ca)) as channel:
        assert _complete(channel) == grpc.StatusCode.UNAVAILABLE
    with grpc.secure_channel(address, with_certificate) as channel:
        assert _complete(channel) == grpc.StatusCode.OK
