"""Ports are never shared: a service whose port is taken exits 2 with one line naming it,
and a second `llmmesh up` refuses to start beside a running mesh; `llmmesh health` reads
the plain-text health ports."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest
from typer.testing import CliRunner

from llmmesh.cli import app
from llmmesh.mesh import SERVICES, Mesh
from llmmesh.router.v1 import router_service_pb2, router_service_pb2_grpc
from llmmesh.testing.mesh import AUTH_METADATA, local_mesh
from llmmesh.testing.ports import free_port

FAIL_FAST_S = 20.0


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port that another process (here: a plain socket) listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


@pytest.mark.parametrize("variable", ["PORT", "HEALTH_PORT"])
def test_a_service_started_on_a_taken_port_exits_2_with_one_line_naming_it(
    taken_port: int, variable: str
) -> None:
    ports = {"PORT": free_port(), "HEALTH_PORT": free_port(), variable: taken_port}
    env = {
        **os.environ,
        "LLMMESH_INSECURE_PEERS": "true",
        **{f"LLMMESH_RATELIMITER_{name}": str(port) for name, port in ports.items()},
    }
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "llmmesh_ratelimiter"],
        env=env,
        capture_output=True,
        timeout=FAIL_FAST_S,
        check=False,
    )
    stderr = completed.stderr.decode()
    assert completed.returncode == 2, stderr
    assert time.monotonic() - started < FAIL_FAST_S
    assert "Traceback" not in stderr
    last_line = stderr.strip().splitlines()[-1]
    assert last_line == f"llmmesh-ratelimiter: port {taken_port} on 127.0.0.1 is in use"


def test_a_second_llmmesh_up_fails_fast_and_llmmesh_health_reads_the_health_ports(
    tmp_path: pathlib.Path,
) -> None:
    with local_mesh(tmp_path / "services.log") as mesh:
        env = {**os.environ}
        for service in SERVICES:
            env[f"LLMMESH_{service.upper()}_PORT"] = str(mesh.ports[service])
            env[f"LLMMESH_{service.upper()}_HEALTH_PORT"] = str(mesh.health_ports[service])
        completed = subprocess.run(
            [sys.executable, "-c", "from llmmesh.cli import app; app()", "up"],
            env=env,
            capture_output=True,
            timeout=FAIL_FAST_S,
            check=False,
        )
        stderr = completed.stderr.decode()
        assert completed.returncode == 2, stderr
        assert "is in use: is another mesh running?" in stderr
        assert "Traceback" not in stderr
        _still_serves(mesh)
        health = CliRunner().invoke(
            app, ["health", *(f"--{s}={mesh.health_ports[s]}" for s in SERVICES)]
        )
        assert health.exit_code == 0, health.output
        assert health.output.count("SERVING") == len(SERVICES)


def _still_serves(mesh: Mesh) -> None:
    with grpc.insecure_channel(mesh.router_address) as channel:
        models = router_service_pb2_grpc.RouterServiceStub(channel).ListModels(
            router_service_pb2.ListModelsRequest(), metadata=AUTH_METADATA, timeout=5
        )
    assert models.models
