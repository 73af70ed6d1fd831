"""Entry point of `llmmesh-cache`: the composition root of the cache service."""

from llmmesh.cache.v1 import cache_service_pb2, cache_service_pb2_grpc
from llmmesh.runtime.launch import launch
from llmmesh.runtime.mesh_security import mesh_serving
from llmmesh.runtime.peer_identity import CallerRules
from llmmesh_cache.settings import CacheSettings
from llmmesh_cache.wiring import build_servicer

# Only the router looks up and stores answers; LLMMESH_CACHE_ALLOWED_PEERS overrides it.
CALLERS = CallerRules(default=("router",))


def main() -> None:
    launch(
        service="cache",
        grpc_service_name=cache_service_pb2.DESCRIPTOR.services_by_name["CacheService"].full_name,
        settings_class=CacheSettings,
        build=build_servicer,
        add_servicer=cache_service_pb2_grpc.add_CacheServiceServicer_to_server,
        serving=mesh_serving(CALLERS),
    )


if __name__ == "__main__":
    main()
