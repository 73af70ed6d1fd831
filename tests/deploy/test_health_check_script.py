"""The images' HEALTHCHECK script, run as Docker runs it, against a real gRPC server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from llmmesh.testing.ports import free_port

from .repo_facts import REPO_ROOT

SCRIPT = REPO_ROOT / "deploy" / "docker" / "grpc_health_check.py"


@pytest.fixture
def health_server() -> Iterator[tuple[health.HealthServicer, int]]:
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(grace=None)


def run_check(*arguments: str) -> int:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *arguments], capture_output=True, timeout=30, check=False
    )
    return result.returncode


def test_serving_server_is_healthy(health_server: tuple[health.HealthServicer, int]) -> None:
    servicer, port = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert run_check(f"127.0.0.1:{port}") == 0


def test_not_serving_server_is_unhealthy(
    health_server: tuple[health.HealthServicer, int],
) -> None:
    servicer, port = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert run_check(f"127.0.0.1:{port}") == 1


def test_unknown_service_name_is_unhealthy(
    health_server: tuple[health.HealthServicer, int],
) -> None:
    servicer, port = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert run_check(f"127.0.0.1:{port}", "llmmesh.nothing.v1.Nothing") == 1


def test_nothing_listening_is_unhealthy() -> None:
    assert run_check(f"127.0.0.1:{free_port()}") == 1


def test_missing_address_is_a_usage_error() -> None:
    assert run_check() == 2
