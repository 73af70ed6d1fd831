"""Entry point of `llmmesh-router`: the composition root of the router service."""

from llmmesh.router.v1 import router_service_pb2, router_service_pb2_grpc
from llmmesh.runtime.launch import launch
from llmmesh.runtime.listeners import ServingTransport
from llmmesh.runtime.mesh_security import MeshCredentials, public_serving
from llmmesh.runtime.tls import TlsFiles
from llmmesh_router.settings import RouterSettings
from llmmesh_router.wiring import build_servicer


def public_port(settings: RouterSettings, _credentials: MeshCredentials) -> ServingTransport:
    """The front door: tenants with API keys, not mesh peers, over plain text or TLS.

    The router's mesh credentials are what it presents to its peers (see Peers.connect).
    """
    files = TlsFiles(
        settings.public_tls_cert_file, settings.public_tls_key_file, settings.public_client_ca_file
    )
    return public_serving(files, variables="LLMMESH_ROUTER_PUBLIC_TLS_*")


def main() -> None:
    launch(
        service="router",
        grpc_service_name=router_service_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name,
        settings_class=RouterSettings,
        build=build_servicer,
        add_servicer=router_service_pb2_grpc.add_RouterServiceServicer_to_server,
        serving=public_port,
    )


if __name__ == "__main__":
    main()
