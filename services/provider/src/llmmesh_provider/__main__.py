"""Entry point of `llmmesh-provider`: the composition root of the provider service."""

from llmmesh.provider.v1 import provider_service_pb2, provider_service_pb2_grpc
from llmmesh.runtime.launch import launch
from llmmesh.runtime.mesh_security import mesh_serving
from llmmesh.runtime.peer_identity import CallerRules
from llmmesh_provider.settings import ProviderSettings
from llmmesh_provider.wiring import build_servicer

# The router generates and embeds; the cache embeds for semantic lookups.
# LLMMESH_PROVIDER_ALLOWED_PEERS replaces both lists.
CALLERS = CallerRules(default=("router",), by_method={"Embed": ("router", "cache")})


def main() -> None:
    launch(
        service="provider",
        grpc_service_name=provider_service_pb2.DESCRIPTOR.services_by_name[
            "ProviderService"
        ].full_name,
        settings_class=ProviderSettings,
        build=build_servicer,
        add_servicer=provider_service_pb2_grpc.add_ProviderServiceServicer_to_server,
        serving=mesh_serving(CALLERS),
    )


if __name__ == "__main__":
    main()
