"""Runs the four services as separate local processes, as `llmmesh up` and tests do.

Each service is its own `python -m llmmesh_<service>` process on its own port, wired to
the others over real gRPC on 127.0.0.1, with a plain-text health-only port beside it. By
default the services talk mTLS with certificates from a throw-away CA made for the run
(`llmmesh.local_ca`, in a temporary folder removed at stop); the router's own port stays
plain text, so clients call it as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Literal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llmmesh.runtime.listeners import port_problem
from llmmesh.testing.ports import free_port

SERVICES = ("provider", "ratelimiter", "cache", "router")
DEFAULT_PORTS = {"router": 50051, "ratelimiter": 50052, "cache": 50053, "provider": 50054}
# Plain-text grpc.health.v1 only: what `llmmesh health` and waiting for SERVING use.
DEFAULT_HEALTH_PORTS = {"router": 50061, "ratelimiter": 50062, "cache": 50063, "provider": 50064}
HOST = "127.0.0.1"
HEALTH_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0

# How services prove themselves to each other: mTLS with the run's certificates, a mesh
# token, or nothing at all (LLMMESH_INSECURE_PEERS=true, for a developer who asks for it).
PeerSecurity = Literal["mtls", "token", "insecure"]


class PortInUseError(RuntimeError):
    """A port the mesh needs is taken; the message is one line naming port and service."""


@dataclasses.dataclass
class MeshProcess:
    service: str
    port: int
    health_port: int
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def health_address(self) -> str:
        return f"{HOST}:{self.health_port}"


def _prefix(service: str) -> str:
    return f"LLMMESH_{service.upper()}_"


class LocalCredentials:
    """What the run's services prove themselves with, in a folder that lives as long as it.

    For mTLS, `authority` can issue further certificates from the same CA (a test that
    calls a service as one of its peers, or as a stranger).
    """

    def __init__(self, peers: PeerSecurity) -> None:
        self.peers = peers
        self.directory = pathlib.Path(tempfile.mkdtemp(prefix="llmmesh-mesh-"))
        self.environment: dict[str, str] = {}
        if peers == "mtls":
            # Imported here: cryptography is needed only by whoever makes certificates.
            from llmmesh.local_ca import LocalCertificateAuthority, mesh_certificates

            self.authority = LocalCertificateAuthority(self.directory)
            self.certificates = mesh_certificates(self.authority)
            for service, issued in self.certificates.items():
                self.environment.update(issued.environment(_prefix(service)))
        elif peers == "token":
            self.token = secrets.token_urlsafe(32)
            token_file = self.directory / "mesh-token"
            token_file.write_text(self.token + "\n")
            token_file.chmod(0o600)
            self.environment["LLMMESH_MESH_TOKEN_FILE"] = str(token_file)
        else:
            self.environment["LLMMESH_INSECURE_PEERS"] = "true"

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class Mesh:
    """The four service processes; start() waits until each reports SERVING.

    `health_ports` defaults to DEFAULT_HEALTH_PORTS when `ports` is left to its defaults,
    and to free ports when `ports` is given. `replica_ports` starts further replicas of a
    service from the beginning, each on its own port, and the router addresses all of them.
    """

    def __init__(
        self,
        ports: Mapping[str, int] | None = None,
        env: Mapping[str, str] | None = None,
        log_to: IO[bytes] | int | None = None,
        python: str = sys.executable,
        *,
        health_ports: Mapping[str, int] | None = None,
        peers: PeerSecurity = "mtls",
        replica_ports: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        self.ports = dict(ports or DEFAULT_PORTS)
        if health_ports is None:
            health_ports = DEFAULT_HEALTH_PORTS if ports is None else _free_ports()
        self.health_ports = dict(health_ports)
        # The interpreter (and so the environment) the services run from.
        self._python = python
        self._base_env = dict(env if env is not None else os.environ)
        self._peers: PeerSecurity = peers
        self.credentials: LocalCredentials | None = None
        self._log_to = log_to
        self.processes: dict[str, MeshProcess] = {}
        self._replica_ports = {s: list(p) for s, p in (replica_ports or {}).items()}
        # Further replicas (from replica_ports, or add_replica), stopped with the rest.
        self.replicas: list[MeshProcess] = []

    @property
    def router_address(self) -> str:
        return f"{HOST}:{self.ports['router']}"

    def check_ports(self) -> None:
        """Raises PortInUseError for the first port the mesh needs that is taken."""
        for service in SERVICES:
            for port, variable in (
                (self.ports[service], "PORT"),
                (self.health_ports[service], "HEALTH_PORT"),
            ):
                problem = port_problem(HOST, port)
                if problem:
                    raise PortInUseError(
                        f"port {port} ({service}) on {HOST} {problem}: is another mesh "
                        f"running? Stop it, or move this one with {_prefix(service)}{variable}"
                    )

    def start(self) -> None:
        self.check_ports()
        self.credentials = LocalCredentials(self._peers)
        try:
            for service in SERVICES:
                self.processes[service] = self._spawn(
                    service, self.ports[service], self.health_ports[service]
                )
                for port in self._replica_ports.get(service, ()):
                    self.replicas.append(self._spawn(service, port, free_port()))
            for member in [*self.processes.values(), *self.replicas]:
                self.wait_serving(member)
        except BaseException:
            self.stop()
            raise

    def add_replica(self, service: str, port: int, health_port: int) -> MeshProcess:
        """One more process of `service` on ports of its own (ports are never shared)."""
        replica = self._spawn(service, port, health_port)
        self.replicas.append(replica)
        self.wait_serving(replica)
        return replica

    def restart(self, service: str) -> MeshProcess:
        """Stops one service (SIGTERM) and starts it again on the same ports."""
        member = self.processes[service]
        member.process.send_signal(signal.SIGTERM)
        member.process.wait(STOP_TIMEOUT_S)
        self.processes[service] = self._spawn(service, member.port, member.health_port)
        self.wait_serving(self.processes[service])
        return self.processes[service]

    def environment(self) -> dict[str, str]:
        """What every service is started with: ports, peers' addresses and credentials."""
        assert self.credentials is not None, "the mesh has not started"
        env = {**self._base_env, **self.credentials.environment}
        for service in SERVICES:
            prefix = _prefix(service)
            env[f"{prefix}PORT"] = str(self.ports[service])
            env[f"{prefix}HEALTH_PORT"] = str(self.health_ports[service])
            env.setdefault(f"{prefix}LISTEN_HOST", HOST)
        for peer in ("ratelimiter", "cache", "provider"):
            env[f"LLMMESH_ROUTER_{peer.upper()}_ADDRESS"] = self._address(peer)
        env["LLMMESH_CACHE_PROVIDER_ADDRESS"] = self._address("provider")
        return env

    def _address(self, peer: str) -> str:
        """A peer's target: every replica of it, spread round-robin, where it runs several."""
        every_port = [self.ports[peer], *self._replica_ports.get(peer, ())]
        if len(every_port) == 1:
            return f"{HOST}:{every_port[0]}"
        return "ipv4:" + ",".join(f"{HOST}:{port}" for port in every_port)

    def _spawn(self, service: str, port: int, health_port: int) -> MeshProcess:
        prefix = _prefix(service)
        env = {
            **self.environment(),
            f"{prefix}PORT": str(port),
            f"{prefix}HEALTH_PORT": str(health_port),
        }
        process = subprocess.Popen(
            [self._python, "-m", f"llmmesh_{service}"],
            env=env,
            stdout=self._log_to,
            stderr=self._log_to,
        )
        return MeshProcess(service, port, health_port, process)

    def wait_serving(self, member: MeshProcess, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
        service = member.service
        deadline = time.monotonic() + timeout_s
        with grpc.insecure_channel(member.health_address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if member.process.poll() is not None:
                    raise RuntimeError(
                        f"llmmesh-{service} exited with code {member.process.returncode}"
                    )
                with contextlib.suppress(grpc.RpcError):
                    response = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"llmmesh-{service} did not report SERVING in time")
                time.sleep(0.05)

    def stop(self) -> dict[str, int]:
        """SIGTERM to every process (routers first, so they drain before their peers);
        returns each service's worst exit code."""
        members = [
            *self.replicas,
            *(self.processes[s] for s in reversed(SERVICES) if s in self.processes),
        ]
        members.sort(key=lambda m: SERVICES.index(m.service), reverse=True)
        for member in members:
            if member.process.poll() is None:
                member.process.send_signal(signal.SIGTERM)
        codes: dict[str, int] = {}
        for member in members:
            try:
                code = member.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                member.process.kill()
                code = member.process.wait()
            codes[member.service] = (
                code if codes.get(member.service, 0) == 0 else codes[member.service]
            )
        if self.credentials is not None:
            self.credentials.remove()
        return codes


def _free_ports() -> dict[str, int]:
    return {service: free_port() for service in SERVICES}


@contextlib.contextmanager
def running_mesh(
    ports: Mapping[str, int] | None = None,
    env: Mapping[str, str] | None = None,
    log_to: IO[bytes] | int | None = None,
) -> Iterator[Mesh]:
    mesh = Mesh(ports, env, log_to)
    mesh.start()
    try:
        yield mesh
    finally:
        mesh.stop()
