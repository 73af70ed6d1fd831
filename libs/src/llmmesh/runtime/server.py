"""The grpc.aio server bootstrap every service runs: health, reflection, drain, reload.

Lifecycle: start serving (with the transport's credentials and caller checks, and a
health-only listener where one is configured), alive at once and ready once the first
readiness probe passes; probe readiness and keep grpc.health.v1 in step with it (see
`llmmesh.runtime.health`); on SIGHUP re-read the policy and certificates; on SIGTERM or
SIGINT report not ready, wait the drain delay, stop accepting, let in-flight RPCs (streams
included) finish within the grace period, close dependencies and return, so the process
exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
import structlog
from grpc_health.v1 import health, health_pb2_grpc

from llmmesh.policy import PolicyError, read_policy_document
from llmmesh.runtime.channels import SERVER_KEEPALIVE_OPTIONS
from llmmesh.runtime.health import NOT_SERVING, SERVING, HealthReporter, evaluate
from llmmesh.runtime.interceptors import ServerCallInterceptor
from llmmesh.runtime.listeners import (
    NO_REUSEPORT,
    PLAINTEXT,
    ServingTransport,
    bind,
    start_health_listener,
)
from llmmesh.runtime.redaction import log_loop_exception
from llmmesh.runtime.reflection import enable_reflection
from llmmesh.runtime.settings import ServiceSettings
from llmmesh.runtime.watched_files import check_all_now
from llmmesh.runtime.wiring import Wiring

log = structlog.get_logger(__name__)

# Checks bound their own waits (the ratelimiter's by its decision timeout, at most 10 s);
# this only catches one that does not.
READINESS_CHECK_TIMEOUT_S = 12.0

AddServicer = Callable[[Any, grpc.aio.Server], None]


# SIGHUP reloads the policy while serving; once stopping, there is nothing to reload.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _already_stopping() -> None:
    log.debug("stop_signal_ignored", reason="already stopping")


class ServiceHost:
    """Runs one service's servicer until a termination signal drains it."""

    def __init__(
        self,
        *,
        service_name: str,
        settings: ServiceSettings,
        wiring: Wiring,
        add_servicer: AddServicer,
        transport: ServingTransport = PLAINTEXT,
    ) -> None:
        self._service_name = service_name
        self._transport = transport
        self._settings = settings
        self._wiring = wiring
        self._add_servicer = add_servicer
        self._health = HealthReporter(service_name)
        self._stop_requested = asyncio.Event()
        self.port = 0

    async def run(self) -> None:
        server = self._build_server()
        host = self._settings.listen_host
        self.port = bind(server, host, self._settings.port, self._transport.credentials)
        await self._health.start()
        health_listener = None
        if self._settings.health_port:
            health_listener = await start_health_listener(
                self._health.servicer, host, self._settings.health_port
            )
        await server.start()
        await self._probe_readiness()
        log.info(
            "serving",
            port=self.port,
            grpc_service=self._service_name,
            transport=self._transport.description,
            health_port=self._settings.health_port or None,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop_requested.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        monitor = asyncio.create_task(self._monitor_readiness())
        try:
            await self._stop_requested.wait()
        finally:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
            # A second signal (Ctrl-C reaches every process of the group, then a supervisor
            # sends SIGTERM) must not kill it, during the drain or after: from here on the
            # process is on its way out and a stop signal has nothing left to do.
            for sig in STOP_SIGNALS:
                loop.add_signal_handler(sig, _already_stopping)
            await self._drain(server)
            if health_listener is not None:
                await health_listener.stop(None)

    def request_stop(self) -> None:
        """Starts the drain, as SIGTERM does (for hosts that embed the service)."""
        self._stop_requested.set()

    def _build_server(self) -> grpc.aio.Server:
        max_bytes = self._settings.max_message_bytes
        server = grpc.aio.server(
            # Callers are checked first, so a refused call costs no span.
            interceptors=[*self._transport.interceptors, ServerCallInterceptor()],
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
                NO_REUSEPORT,
                *SERVER_KEEPALIVE_OPTIONS,
            ],
        )
        self._add_servicer(self._wiring.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health.servicer, server)
        if self._settings.reflection:
            enable_reflection([self._service_name, health.SERVICE_NAME], server)
        return server

    async def _drain(self, server: grpc.aio.Server) -> None:
        log.info("draining", grace_period_s=self._settings.grace_period_s)
        await self._health.drain()
        if self._settings.drain_delay_s:
            await asyncio.sleep(self._settings.drain_delay_s)
        await server.stop(self._settings.grace_period_s)
        for close in self._wiring.closers:
            try:
                await close()
            except Exception:  # one failing closer must not skip the rest
                log.exception("close_failed")
        log.info("stopped")

    async def _monitor_readiness(self) -> None:
        while True:
            await asyncio.sleep(self._settings.health_probe_interval_s)
            await self._probe_readiness()

    async def _probe_readiness(self) -> None:
        readiness = await evaluate(self._wiring.readiness_checks, READINESS_CHECK_TIMEOUT_S)
        for note, holds in self._wiring.health_notes.items():
            await self._health.servicer.set(
                f"{self._service_name}/{note}", SERVING if holds() else NOT_SERVING
            )
        await self._health.report(readiness)

    def _reload(self) -> None:
        check_all_now()  # certificates and tokens
        self._reload_policy()

    def _reload_policy(self) -> None:
        try:
            document = read_policy_document(self._settings.policy_file)
            for reload in self._wiring.reloaders:
                reload(document)
        except PolicyError as error:
            log.error("policy_reload_rejected", error=str(error))
            return
        log.info("policy_reloaded")


def run_service(
    *,
    service_name: str,
    settings: ServiceSettings,
    build: Callable[[], Any],
    add_servicer: AddServicer,
    transport: ServingTransport = PLAINTEXT,
) -> None:
    """Entry point body of every service: builds its wiring inside the loop and serves.

    `build` is a coroutine function returning the service's Wiring.
    """

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(log_loop_exception)
        wiring: Wiring = await build()
        await ServiceHost(
            service_name=service_name,
            settings=settings,
            wiring=wiring,
            add_servicer=add_servicer,
            transport=transport,
        ).run()

    if settings.use_uvloop:
        try:
            import uvloop
        except ImportError:
            asyncio.run(main())
        else:
            uvloop.run(main())
    else:
        asyncio.run(main())
    # Closing the loop restored the default dispositions, which would kill the process
    # (exit -15) if a late stop signal arrived while the interpreter shuts down.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
