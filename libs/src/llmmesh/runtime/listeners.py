"""Where a service listens: its gRPC port (plain text or TLS) and an optional health-only port.

SO_REUSEPORT is off, so a second process cannot bind a port that a running service holds
and silently take half its traffic; a port that is taken ends the start with a one-line
message instead. The health-only listener is plain text and serves grpc.health.v1 alone, so
probes (Kubernetes' gRPC probes cannot present certificates) reach it while the service's
own port requires client certificates.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2_grpc

# gRPC turns SO_REUSEPORT on by default.
NO_REUSEPORT = ("grpc.so_reuseport", 0)


@dataclasses.dataclass(frozen=True)
class ServingTransport:
    """How the service's port is served: its credentials (None: plain text) and the
    interceptors that check callers, run before every other interceptor."""

    credentials: grpc.ServerCredentials | None = None
    interceptors: tuple[grpc.aio.ServerInterceptor, ...] = ()
    description: str = "plaintext"


PLAINTEXT = ServingTransport()


class PortUnavailableError(RuntimeError):
    """The port cannot be bound; the message is one line naming it."""


def _addresses(host: str, port: int) -> list[tuple[socket.AddressFamily, Any]]:
    infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    return [(family, address) for family, _, _, _, address in infos]


def port_problem(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on right now, or None if it can.

    Binds the way gRPC does (SO_REUSEADDR, no SO_REUSEPORT), so a port held by a
    listening process shows as in use while one in TIME_WAIT does not.
    """
    try:
        addresses = _addresses(host, port)
    except OSError as error:
        return f"cannot resolve {host}: {error.strerror or error}"
    for family, address in addresses:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return "is in use"
                return f"cannot be bound: {error.strerror}"
    return None


def _unavailable(host: str, port: int, problem: str) -> PortUnavailableError:
    return PortUnavailableError(f"port {port} on {host} {problem}")


def bind(
    server: grpc.aio.Server, host: str, port: int, credentials: grpc.ServerCredentials | None
) -> int:
    """Adds the port to the server and returns it (the one chosen, for port 0)."""
    # Checked first so that a taken port gives one clear line, not gRPC core's log and error.
    problem = port_problem(host, port) if port else None
    if problem:
        raise _unavailable(host, port, problem)
    address = f"{host}:{port}"
    try:
        if credentials is None:
            return int(server.add_insecure_port(address))
        return int(server.add_secure_port(address, credentials))
    except RuntimeError:
        raise _unavailable(host, port, port_problem(host, port) or "cannot be bound") from None


async def start_health_listener(
    servicer: health_pb2_grpc.HealthServicer, host: str, port: int
) -> grpc.aio.Server:
    """A plain-text server on `port` with the service's health servicer and nothing else."""
    server = grpc.aio.server(options=[NO_REUSEPORT])
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    bind(server, host, port, None)
    await server.start()
    return server
