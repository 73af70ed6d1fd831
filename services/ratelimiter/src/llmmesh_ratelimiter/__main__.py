"""Entry point of `llmmesh-ratelimiter`: the composition root of the ratelimiter service."""

from llmmesh.ratelimit.v1 import ratelimit_service_pb2, ratelimit_service_pb2_grpc
from llmmesh.runtime.launch import launch
from llmmesh.runtime.mesh_security import mesh_serving
from llmmesh.runtime.peer_identity import CallerRules
from llmmesh_ratelimiter.settings import RatelimiterSettings
from llmmesh_ratelimiter.wiring import build_servicer

# Only the router reserves and settles; LLMMESH_RATELIMITER_ALLOWED_PEERS overrides it.
CALLERS = CallerRules(default=("router",))


def main() -> None:
    launch(
        service="ratelimiter",
        grpc_service_name=ratelimit_service_pb2.DESCRIPTOR.services_by_name[
            "RateLimitService"
        ].full_name,
        settings_class=RatelimiterSettings,
        build=build_servicer,
        add_servicer=ratelimit_service_pb2_grpc.add_RateLimitServiceServicer_to_server,
        serving=mesh_serving(CALLERS),
    )


if __name__ == "__main__":
    main()
