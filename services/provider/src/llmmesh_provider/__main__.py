"""Entry point of `llmmesh-provider`: the composition root of the provider service."""

from llmmesh.provider.v1 import provider_service_pb2, provider_service_pb2_grpc
from llmmesh.runtime.launch import launch
from llmmesh_provider.settings import ProviderSettings
from llmmesh_provider.wiring import build_servicer


def main() -> None:
    launch(
        service="provider",
        grpc_service_name=provider_service_pb2.DESCRIPTOR.services_by_name[
            "ProviderService"
        ].full_name,
        settings_class=ProviderSettings,
        build=build_servicer,
        add_servicer=provider_service_pb2_grpc.add_ProviderServiceServicer_to_server,
    )


if __name__ == "__main__":
    main()
