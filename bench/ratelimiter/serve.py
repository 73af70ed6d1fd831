"""One ratelimiter replica for the benchmark, in its own process: `serve PORT REDIS_URL POLICY`."""

from __future__ import annotations

import json
import sys

import grpc.aio
import uvloop

from llmmesh.ratelimit.v1 import ratelimit_service_pb2_grpc
from llmmesh_ratelimiter.settings import RatelimiterSettings
from llmmesh_ratelimiter.wiring import build_servicer


async def serve(port: int, redis_url: str, policy: dict[str, object]) -> None:
    settings = RatelimiterSettings(redis_url=redis_url, decision_timeout_s=2.0)
    wiring = await build_servicer(settings, policy)
    server = grpc.aio.server()
    ratelimit_service_pb2_grpc.add_RateLimitServiceServicer_to_server(wiring.servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])))
