"""The four services as real processes on free ports, for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator, Mapping

from llmmesh.mesh import SERVICES, Mesh
from llmmesh.testing.ports import free_port

DEV_API_KEY = "llmmesh-dev-key"
AUTH_METADATA = (("authorization", f"Bearer {DEV_API_KEY}"),)


def free_mesh_ports() -> dict[str, int]:
    return {service: free_port() for service in SERVICES}


@contextlib.contextmanager
def local_mesh(
    log_path: pathlib.Path,
    env: Mapping[str, str] | None = None,
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
        mesh = Mesh(free_mesh_ports(), environment, log_to=log, replica_ports=replica_ports)
        mesh.start()
        try:
            yield mesh
        finally:
            mesh.stop()
