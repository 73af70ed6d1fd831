"""Runs the four services as separate local processes, as `llmmesh up` and tests do.

Each service is its own `python -m llmmesh_<service>` process on its own port, wired to
the others over real gRPC on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICES = ("provider", "ratelimiter", "cache", "router")
DEFAULT_PORTS = {"router": 50051, "ratelimiter": 50052, "cache": 50053, "provider": 50054}
HEALTH_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


@dataclasses.dataclass
class MeshProcess:
    service: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def mesh_environment(
    ports: Mapping[str, int],
    base: Mapping[str, str],
    replica_ports: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, str]:
    """The environment that points every service at its port and the router at its peers
    (at every replica of a peer that runs several, spread round-robin)."""
    env = dict(base)
    for service, port in ports.items():
        env[f"LLMMESH_{service.upper()}_PORT"] = str(port)
        env.setdefault(f"LLMMESH_{service.upper()}_LISTEN_HOST", "127.0.0.1")

    def address(peer: str) -> str:
        every_port = [ports[peer], *(replica_ports or {}).get(peer, ())]
        if len(every_port) == 1:
            return f"127.0.0.1:{every_port[0]}"
        return "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in every_port)

    for peer in ("ratelimiter", "cache", "provider"):
        env[f"LLMMESH_ROUTER_{peer.upper()}_ADDRESS"] = address(peer)
    env["LLMMESH_CACHE_PROVIDER_ADDRESS"] = address("provider")
    return env


class Mesh:
    """The four service processes; start() waits until each reports SERVING.

    `replica_ports` starts further replicas of a service from the beginning, each on its
    own port, and the router addresses all of them.
    """

    def __init__(
        self,
        ports: Mapping[str, int] | None = None,
        env: Mapping[str, str] | None = None,
        log_to: IO[bytes] | int | None = None,
        python: str = sys.executable,
        replica_ports: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        self.ports = dict(ports or DEFAULT_PORTS)
        # The interpreter (and so the environment) the services run from.
        self._python = python
        self._replica_ports = {s: list(p) for s, p in (replica_ports or {}).items()}
        self._env = mesh_environment(
            self.ports, env if env is not None else os.environ, self._replica_ports
        )
        self._log_to = log_to
        self.processes: dict[str, MeshProcess] = {}
        # Further replicas (from replica_ports, or add_replica), stopped with the rest.
        self.replicas: list[MeshProcess] = []

    @property
    def router_address(self) -> str:
        return f"127.0.0.1:{self.ports['router']}"

    def start(self) -> None:
        for service in SERVICES:
            self.processes[service] = self._spawn(service, self.ports[service])
            for port in self._replica_ports.get(service, ()):
                self.replicas.append(self._spawn(service, port))
        try:
            for member in [*self.processes.values(), *self.replicas]:
                self.wait_serving(member)
        except BaseException:
            self.stop()
            raise

    def add_replica(self, service: str, port: int | None = None) -> MeshProcess:
        """One more process of `service`, on its own port or (SO_REUSEPORT) a shared one."""
        replica = self._spawn(service, port or self.ports[service])
        self.replicas.append(replica)
        self.wait_serving(replica)
        return replica

    def _spawn(self, service: str, port: int) -> MeshProcess:
        env = {**self._env, f"LLMMESH_{service.upper()}_PORT": str(port)}
        process = subprocess.Popen(
            [self._python, "-m", f"llmmesh_{service}"],
            env=env,
            stdout=self._log_to,
            stderr=self._log_to,
        )
        return MeshProcess(service, port, process)

    def wait_serving(self, member: MeshProcess, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
        service = member.service
        deadline = time.monotonic() + timeout_s
        with grpc.insecure_channel(member.address) as channel:
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
        return codes


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
