"""The body of every service's entry point: settings, logging, policy, then serve.

Bad settings or a bad policy file end the process at start with exit code 2 and a message
that names the field, before any port is opened.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import pydantic
import structlog

from llmmesh.policy import PolicyError, read_policy_document
from llmmesh.runtime.logging import configure_logging
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
) -> None:
    try:
        settings = settings_class()
    except pydantic.ValidationError as error:
        _fail(f"llmmesh-{service}: invalid settings: {error}")
    configure_logging(service, settings.log_level)
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

    run_service(
        service_name=grpc_service_name,
        settings=settings,
        build=build_wiring,
        add_servicer=add_servicer,
    )


def _flusher(telemetry: Telemetry) -> Callable[[], Awaitable[None]]:
    async def flush() -> None:
        # Export what the drain recorded before the process exits.
        await asyncio.to_thread(telemetry.shutdown)

    return flush


def _fail(message: str) -> NoReturn:
    structlog.get_logger(__name__).error("startup_failed", error=message)
    print(message, file=sys.stderr)
    raise SystemExit(EXIT_BAD_CONFIGURATION)
