"""Entry point of `llmmesh-router`: the composition root of the router service."""

from llmmesh.router.v1 import router_service_pb2, router_service_pb2_grpc
from llmmesh.runtime.launch import launch
from llmmesh_router.settings import RouterSettings
from llmmesh_router.wiring import build_servicer


def main() -> None:
    launch(
        service="router",
        grpc_service_name=router_service_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name,
        settings_class=RouterSettings,
        build=build_servicer,
        add_servicer=router_service_pb2_grpc.add_RouterServiceServicer_to_server,
    )


if __name__ == "__main__":
    main()
