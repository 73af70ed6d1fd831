"""Entry point of `llmmesh-ratelimiter`: the composition root of the ratelimiter service."""

from llmmesh.ratelimit.v1 import ratelimit_service_pb2, ratelimit_service_pb2_grpc
from llmmesh.runtime.launch import launch
from llmmesh_ratelimiter.settings import RatelimiterSettings
from llmmesh_ratelimiter.wiring import build_servicer


def main() -> None:
    launch(
        service="ratelimiter",
        grpc_service_name=ratelimit_service_pb2.DESCRIPTOR.services_by_name[
            "RateLimitService"
        ].full_name,
        settings_class=RatelimiterSettings,
        build=build_servicer,
        add_servicer=ratelimit_service_pb2_grpc.add_RateLimitServiceServicer_to_server,
    )


if __name__ == "__main__":
    main()
