"""Client channels between services: keepalive, and round-robin over every ready replica.

A target such as `ratelimiter:50052` resolves through the dns resolver to all replicas
(a headless Service in Kubernetes), and calls are spread over them round-robin; an
`ipv4:` target lists addresses itself (`ipv4:10.0.0.1:50052,10.0.0.2:50052`). Each channel
watches every replica's readiness (grpc.health.v1, client-side health checking) and sends
calls only to replicas that report SERVING, so a replica that drains or cannot serve under
its failure mode stops receiving calls within moments, before it stops accepting them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import grpc
import grpc.aio

from llmmesh.runtime.client_tracing import client_tracing_interceptors

KEEPALIVE_TIME_MS = 20_000
KEEPALIVE_TIMEOUT_MS = 10_000
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
INITIAL_RECONNECT_BACKOFF_MS = 200
MAX_RECONNECT_BACKOFF_MS = 5_000

# A replica that does not implement grpc.health.v1 counts as ready (gRFC A17).
_SERVICE_CONFIG = json.dumps(
    {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ""}}
)
_SCHEMES_WITHOUT_SLASHES = ("unix:", "ipv4:", "ipv6:")


def dns_target(address: str) -> str:
    """`host:port` as a dns-resolver target; targets with a scheme are kept as they are."""
    if "://" in address or address.startswith(_SCHEMES_WITHOUT_SLASHES):
        return address
    return f"dns:///{address}"


def open_channel(
    address: str,
    *,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """An insecure channel to a peer service (the mesh runs inside a trusted network)."""
    options = [
        ("grpc.service_config", _SERVICE_CONFIG),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        # Retries are the router's decision, made with the caller's deadline in view.
        ("grpc.enable_retries", 0),
        # Peers are near: reconnect quickly after a restart instead of backing off for long.
        ("grpc.initial_reconnect_backoff_ms", INITIAL_RECONNECT_BACKOFF_MS),
        ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ]
    return grpc.aio.insecure_channel(
        dns_target(address),
        options=options,
        interceptors=[*client_tracing_interceptors(), *interceptors],
    )


# Servers accept the clients' keepalive pings at the rate above.
SERVER_KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 2),
    ("grpc.http2.max_ping_strikes", 0),
]
