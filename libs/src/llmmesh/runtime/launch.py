"""The body of every service's entry point: settings, logging, mesh credentials, policy,
then serve.

Bad settings, unusable or missing mesh credentials, a bad policy file or a port that is
taken end the process at start with exit code 2 and a one-line message that names the
variable, field or port.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import pydantic
import structlog

from llmmesh.policy import PolicyError, read_policy_document
from llmmesh.runtime.listeners import PortUnavailableError, ServingTransport, port_problem
from llmmesh.runtime.logging import configure_logging
from llmmesh.runtime.mesh_security import MeshCredentials, MeshSecurityError
from llmmesh.runtime.server import AddServicer, run_service
from llmmesh.runtime.settings import ServiceSettings
from llmmesh.runtime.telemetry import Telemetry, configure_telemetry
from llmmesh.runtime.wiring import Wiring

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)

EXIT_BAD_CONFIGURATION = 2


def launch(
    *,
    service: str,
    grpc_service_name: str,
    settings_class: type[SettingsT],
    build: Callable[[SettingsT, dict[str, Any]], Awaitable[Wiring]],
    add_servicer: AddServicer,
    serving: Callable[[SettingsT, MeshCredentials], ServingTransport],
) -> None:
    """`serving` says how the service's own port is served (`mesh_security.mesh_serving`
    for internal services, `public_serving` for the front door)."""
    try:
        settings = settings_class()
    except pydantic.ValidationError as error:
        _fail(f"llmmesh-{service}: invalid settings: {error}")
    configure_logging(service, settings.log_level)
    try:
        credentials = MeshCredentials.from_settings(settings)
        credentials.require(settings)
        transport: ServingTransport = serving(settings, credentials)
    except MeshSecurityError as error:
        _fail(f"llmmesh-{service}: {error}")
    # Before anything is built, so a second copy of a running service stops at once.
    for port in (settings.port, settings.health_port):
        problem = port_problem(settings.listen_host, port) if port else None
        if problem:
            _fail(f"llmmesh-{service}: port {port} on {settings.listen_host} {problem}")
    telemetry = configure_telemetry(service, prometheus_port=settings.prometheus_port)
    try:
        document = read_policy_document(settings.policy_file)
    except PolicyError as error:
        _fail(f"llmmesh-{service}: {error}")

    async def build_wiring() -> Wiring:
        try:
            wiring = await build(settings, document)
        except PolicyError as error:
            return _fail(f"llmmesh-{service}: {error}")
        if telemetry is not None:
            wiring.closers.append(_flusher(telemetry))
        return wiring

    try:
        run_service(
            service_name=grpc_service_name,
            settings=settings,
            build=build_wiring,
            add_servicer=add_servicer,
            transport=transport,
        )
    except PortUnavailableError as error:
        _fail(f"llmmesh-{service}: {error}")


def _flusher(telemetry: Telemetry) -> Callable[[], Awaitable[None]]:
    async def flush() -> None:
        # Export what the drain recorded before the process exits.
        await asyncio.to_thread(telemetry.shutdown)

    return flush


def _fail(message: str) -> NoReturn:
    structlog.get_logger(__name__).error("startup_failed", error=message)
    print(message, file=sys.stderr)
    raise SystemExit(EXIT_BAD_CONFIGURATION)
