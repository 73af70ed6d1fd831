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
from collections.abc import Iterator, Mapping
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
    peer_addresses: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment that points every service at its port and the router at its peers
    (or at `peer_addresses`, e.g. an `ipv4:` list of several replicas of one peer)."""
    env = dict(base)
    for service, port in ports.items():
        env[f"LLMMESH_{service.upper()}_PORT"] = str(port)
        env.setdefault(f"LLMMESH_{service.upper()}_LISTEN_HOST", "127.0.0.1")
    for peer in ("ratelimiter", "cache", "provider"):
        address = (peer_addresses or {}).get(peer, f"127.0.0.1:{ports[peer]}")
        env[f"LLMMESH_ROUTER_{peer.upper()}_ADDRESS"] = address
    env["LLMMESH_CACHE_PROVIDER_ADDRESS"] = f"127.0.0.1:{ports['provider']}"
    return env


class Mesh:
    """The four service processes; start() waits until each reports SERVING."""

    def __init__(
        self,
        ports: Mapping[str, int] | None = None,
        env: Mapping[str, str] | None = None,
        log_to: IO[bytes] | int | None = None,
        python: str = sys.executable,
        peer_addresses: Mapping[str, str] | None = None,
    ) -> None:
        self.ports = dict(ports or DEFAULT_PORTS)
        # The interpreter (and so the environment) the services run from.
        self._python = python
        self._env = mesh_environment(
            self.ports, env if env is not None else os.environ, peer_addresses
        )
        self._log_to = log_to
        self.processes: dict[str, MeshProcess] = {}
        # Further replicas started with add_replica, stopped with the rest.
        self.replicas: list[MeshProcess] = []

    @property
    def router_address(self) -> str:
        return f"127.0.0.1:{self.ports['router']}"

    def start(self) -> None:
        for service in SERVICES:
            self.processes[service] = self._spawn(service, self.ports[service])
        try:
            for service in SERVICES:
                self.wait_serving(self.processes[service])
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
