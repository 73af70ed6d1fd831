"""The four services as real processes on free ports, for end-to-end tests.

They talk mTLS with certificates made for the test (see llmmesh.mesh), as `llmmesh up`
does; `peers` chooses the mesh token or plain text instead.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator, Mapping

import grpc

from llmmesh.local_ca import IssuedCertificate
from llmmesh.mesh import SERVICES, Mesh, PeerSecurity
from llmmesh.testing.ports import free_port

DEV_API_KEY = "llmmesh-dev-key"
AUTH_METADATA = (("authorization", f"Bearer {DEV_API_KEY}"),)


def free_mesh_ports() -> dict[str, int]:
    return {service: free_port() for service in SERVICES}


def peer_certificate(mesh: Mesh, name: str) -> IssuedCertificate:
    """A certificate from the mesh's CA: a service's own, or a new one for any other name
    (a stranger that the CA vouches for, but no allow-list names)."""
    credentials = mesh.credentials
    if credentials is None or credentials.peers != "mtls":
        raise RuntimeError("not a running mTLS mesh")
    issued = credentials.certificates.get(name)
    if issued is None:
        issued = credentials.authority.issue(name, file_stem=f"extra-{name}")
    return issued


def peer_channel_credentials(mesh: Mesh, name: str) -> grpc.ChannelCredentials:
    """TLS credentials to call the mesh's services directly with `peer_certificate`."""
    issued = peer_certificate(mesh, name)
    return grpc.ssl_channel_credentials(
        root_certificates=issued.ca_file.read_bytes(),
        private_key=issued.key_file.read_bytes(),
        certificate_chain=issued.cert_file.read_bytes(),
    )


@contextlib.contextmanager
def local_mesh(
    log_path: pathlib.Path,
    env: Mapping[str, str] | None = None,
    *,
    peers: PeerSecurity = "mtls",
    replicas: Mapping[str, int] | None = None,
) -> Iterator[Mesh]:
    """A started mesh whose processes log to `log_path`; stopped (SIGTERM) on exit.

    `replicas` asks for more than one process of a service, say `{"provider": 2}`.
    """
    environment = {**os.environ, **(env or {})}
    replica_ports = {
        service: [free_port() for _ in range(count - 1)]
        for service, count in (replicas or {}).items()
    }
    with log_path.open("ab") as log:
        mesh = Mesh(
            free_mesh_ports(), environment, log_to=log, peers=peers, replica_ports=replica_ports
        )
        mesh.start()
        try:
            yield mesh
        finally:
            mesh.stop()
