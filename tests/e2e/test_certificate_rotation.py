"""Certificates rotate without a restart: a running mesh moves to a new CA by replacing its
files, servers present the new certificates to new connections and trust only the new CA,
and the router's channels to its peers follow."""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Callable

import grpc

from llmmesh.common.v1 import chat_pb2
from llmmesh.local_ca import LocalCertificateAuthority
from llmmesh.mesh import Mesh
from llmmesh.ratelimit.v1 import ratelimit_service_pb2, ratelimit_service_pb2_grpc
from llmmesh.router.v1 import router_service_pb2, router_service_pb2_grpc
from llmmesh.testing.mesh import AUTH_METADATA, local_mesh

# Files are checked at most once a second; a loaded machine gets generous room.
WITHIN_S = 20.0


def _replace(path: pathlib.Path, content: bytes) -> None:
    """As Kubernetes updates a mounted Secret: a new file moved over the old one."""
    staged = path.with_name(f".{path.name}.new")
    staged.write_bytes(content)
    os.replace(staged, path)


def _eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WITHIN_S
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _reserve_as(address: str, ca: bytes, cert: bytes, key: bytes) -> bool:
    credentials = grpc.ssl_channel_credentials(ca, key, cert)
    with grpc.secure_channel(address, credentials) as channel:
        try:
            ratelimit_service_pb2_grpc.RateLimitServiceStub(channel).Reserve(
                ratelimit_service_pb2.ReserveRequest(
                    tenant="dev", model="sim-fast", estimated_tokens=5
                ),
                timeout=5,
            )
        except grpc.RpcError:
            return False
    return True


def _tenant_call_works(mesh: Mesh) -> bool:
    with grpc.insecure_channel(mesh.router_address) as channel:
        try:
            response = router_service_pb2_grpc.RouterServiceStub(channel).Complete(
                router_service_pb2.CompleteRequest(
                    model="auto",
                    messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content="hi")],
                ),
                metadata=AUTH_METADATA,
                timeout=5,
            )
        except grpc.RpcError:
            return False
    return bool(response.text)


def test_a_mesh_moves_to_a_new_ca_without_restarting_and_the_router_follows(
    tmp_path: pathlib.Path,
) -> None:
    with local_mesh(tmp_path / "services.log") as mesh:
        credentials = mesh.credentials
        assert credentials is not None
        old = credentials.authority
        new = LocalCertificateAuthority(tmp_path / "new-ca", name="llmmesh rotated CA")
        old_router = credentials.certificates["router"]
        old_router_files = (
            old.certificate_pem,
            old_router.cert_file.read_bytes(),
            old_router.key_file.read_bytes(),
        )
        address = mesh.processes["ratelimiter"].address
        assert _reserve_as(address, *old_router_files)

        # 1. Trust both CAs; 2. new certificates everywhere; 3. trust the new CA only.
        _replace(old.ca_file, old.certificate_pem + new.certificate_pem)
        time.sleep(1.5)
        for service, issued in credentials.certificates.items():
            fresh = new.issue(service, file_stem=f"{service}-rotated")
            _replace(issued.cert_file, fresh.cert_file.read_bytes())
            _replace(issued.key_file, fresh.key_file.read_bytes())
        time.sleep(1.5)
        _replace(old.ca_file, new.certificate_pem)

        new_router = new.issue("router", file_stem="router-client")
        new_router_files = (
            new.certificate_pem,
            new_router.cert_file.read_bytes(),
            new_router.key_file.read_bytes(),
        )
        # A client that trusts the new CA only gets through: the server presents its new
        # certificate and accepts new clients, without a restart.
        _eventually(
            lambda: _reserve_as(address, *new_router_files), "the ratelimiter did not rotate"
        )
        assert not _reserve_as(address, *old_router_files)
        _eventually(lambda: _tenant_call_works(mesh), "tenant traffic did not recover")

        # A restarted peer knows only the new CA: the router gets through only because its
        # channels were renewed with its new certificate.
        mesh.restart("ratelimiter")
        _eventually(lambda: _tenant_call_works(mesh), "the router's channels did not follow")
        assert mesh.processes["router"].process.poll() is None
