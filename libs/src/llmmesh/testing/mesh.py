"""The four services as real processes on free ports, for end-to-end tests.

They talk mTLS with certificates made for the test (see llmmesh.mesh), as `llmmesh up`
does; `peers` chooses the mesh token or plain text instead.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator, Mapping

from llmmesh.mesh import SERVICES, Mesh, PeerSecurity
from llmmesh.testing.ports import free_port

DEV_API_KEY = "llmmesh-dev-key"
AUTH_METADATA = (("authorization", f"Bearer {DEV_API_KEY}"),)


def free_mesh_ports() -> dict[str, int]:
    return {service: free_port() for service in SERVICES}


@contextlib.contextmanager
def local_mesh(
    log_path: pathlib.Path,
    env: Mapping[str, str] | None = None,
    *,
    peers: PeerSecurity = "mtls",
) -> Iterator[Mesh]:
    """A started mesh whose processes log to `log_path`; stopped (SIGTERM) on exit."""
    environment = {**os.environ, **(env or {})}
    with log_path.open("ab") as log:
        mesh = Mesh(free_mesh_ports(), environment, log_to=log, peers=peers)
        mesh.start()
        try:
            yield mesh
        finally:
            mesh.stop()
