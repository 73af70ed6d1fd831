"""Request bytes become messages inside the server interceptor, where a bad one is the
caller's error.

Left to grpc.aio, the request deserializer runs before any interceptor code, and a
DecodeError there leaves as UNKNOWN with the decoder's text in the message and one error
log line with a traceback per call, so anyone who reaches the port can fill the logs. The
interceptor registers its handlers without a deserializer (they receive the raw bytes) and
decodes here instead: a request that does not decode gets INVALID_ARGUMENT with reason
MALFORMED_REQUEST and nothing from the decoder, is counted in a metric, and is logged at
most once per minute per peer host.
"""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import structlog
from opentelemetry import metrics

from llmmesh.runtime import semconv
from llmmesh.runtime.errors import RpcFailure

log = structlog.get_logger(__name__)
meter = metrics.get_meter("llmmesh.runtime.grpc")

MALFORMED_REQUESTS_METRIC = "llmmesh.rpc.server.malformed_requests"
malformed_requests = meter.create_counter(
    MALFORMED_REQUESTS_METRIC,
    unit="{request}",
    description="Requests whose bytes are not a valid message of the method's request type",
)
LOG_INTERVAL_S = 60.0
# Peers remembered by the log throttle; past this the longest-quiet ones are forgotten, so
# a caller rotating addresses costs memory in proportion to this bound, not to its traffic.
MAX_THROTTLED_PEERS = 4096

Deserializer = Callable[[bytes], Any]


class PerKeyThrottle:
    """Lets through one event per key per interval, for at most `max_keys` keys."""

    def __init__(
        self,
        interval_s: float = LOG_INTERVAL_S,
        max_keys: int = MAX_THROTTLED_PEERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval_s = interval_s
        self._max_keys = max_keys
        self._clock = clock
        self._last_allowed: collections.OrderedDict[str, float] = collections.OrderedDict()

    def allow(self, key: str) -> bool:
        now = self._clock()
        last = self._last_allowed.get(key)
        if last is not None and now - last < self._interval_s:
            return False
        self._last_allowed[key] = now
        self._last_allowed.move_to_end(key)
        while len(self._last_allowed) > self._max_keys:
            self._last_allowed.popitem(last=False)
        return True


def peer_host(peer: str) -> str:
    """The host of a gRPC peer string (`ipv4:10.0.0.7:53120` -> `10.0.0.7`), without the port,
    which changes with every connection a caller opens."""
    scheme, _, address = peer.partition(":")
    if scheme in ("ipv4", "ipv6"):
        return address.rpartition(":")[0].strip("[]")
    return peer


class RequestDecoder:
    """Decodes one method's requests; see the module docstring."""

    _log_throttle = PerKeyThrottle()  # shared by every method: the limit is per peer

    def __init__(
        self, deserializer: Deserializer | None, method: str, attributes: dict[str, str]
    ) -> None:
        self._deserializer = deserializer
        self._method = method
        self._attributes = attributes
        descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
        self._type_name = getattr(descriptor, "full_name", "request")

    def decode(self, raw: Any, peer: str) -> Any:
        if self._deserializer is None:
            return raw
        try:
            return self._deserializer(raw)
        except Exception:  # noqa: BLE001 - whatever the decoder raises, the bytes were bad
            malformed_requests.add(1, self._attributes)
            host = peer_host(peer)
            if self._log_throttle.allow(host):
                log.warning(
                    "malformed_request",
                    method=self._method,
                    peer=host,
                    request_bytes=len(raw),
                    note=f"further ones from this peer are counted in {MALFORMED_REQUESTS_METRIC}"
                    f" and not logged for {LOG_INTERVAL_S:.0f} s",
                )
            # A new failure each time: a raised instance keeps the frames it passed through.
            raise RpcFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request is not a valid {self._type_name} message",
                reason="MALFORMED_REQUEST",
            ) from None

    async def decode_stream(
        self, raw_requests: AsyncIterator[Any], peer: str
    ) -> AsyncIterator[Any]:
        """Each request of a client stream, decoded as it arrives."""
        async for raw in raw_requests:
            yield self.decode(raw, peer)


def rpc_attributes(method: str) -> dict[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return {
        semconv.RPC_SYSTEM: "grpc",
        semconv.RPC_SERVICE: service,
        semconv.RPC_METHOD: name,
    }
