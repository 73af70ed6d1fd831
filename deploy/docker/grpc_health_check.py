"""Container health check: exits 0 only when a gRPC server answers grpc.health.v1 SERVING.

Images run it as their HEALTHCHECK (`python grpc_health_check.py 127.0.0.1:50051`); it needs
nothing beyond grpcio and grpcio-health-checking, which every service image already carries.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# Shorter than the HEALTHCHECK timeout, so a hung server reads as unhealthy, not as a timeout.
CHECK_TIMEOUT_S = 3.0
EXIT_SERVING = 0
EXIT_NOT_SERVING = 1
EXIT_USAGE = 2


def check(address: str, service: str = "") -> int:
    """The exit code for `address`: serving, or not (with the reason on stderr)."""
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=CHECK_TIMEOUT_S
            )
        except grpc.RpcError as error:
            print(f"{address}: {error.code().name}", file=sys.stderr)
            return EXIT_NOT_SERVING
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"{address}: {status}", file=sys.stderr)
        return EXIT_NOT_SERVING
    return EXIT_SERVING


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: grpc_health_check.py HOST:PORT [SERVICE]", file=sys.stderr)
        return EXIT_USAGE
    return check(*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
