"""Client channels between services: keepalive, round-robin over every ready replica, and
the mesh's credentials.

A target such as `ratelimiter:50052` resolves through the dns resolver to all replicas
(a headless Service in Kubernetes), and calls are spread over them round-robin; a fixed
list of replicas is written `ipv4:10.0.0.1:50054,10.0.0.2:50054`. Each channel watches
every replica's readiness (grpc.health.v1, client-side health checking) and sends calls
only to replicas that report SERVING, so a replica that drains or cannot serve under its
failure mode stops receiving calls within moments, before it stops accepting them. With
the mesh's certificates the channel is TLS (renewed when they rotate) and presents them;
with a mesh token every call carries it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import grpc
import grpc.aio

from llmmesh.runtime.client_tracing import client_tracing_interceptors
from llmmesh.runtime.mesh_token import token_interceptors
from llmmesh.runtime.renewing_channel import RenewingChannel

if TYPE_CHECKING:
    from llmmesh.runtime.mesh_security import MeshCredentials

KEEPALIVE_TIME_MS = 20_000
KEEPALIVE_TIMEOUT_MS = 10_000
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
INITIAL_RECONNECT_BACKOFF_MS = 200
MAX_RECONNECT_BACKOFF_MS = 5_000

# A replica that does not implement grpc.health.v1 counts as ready (gRFC A17).
_SERVICE_CONFIG = json.dumps(
    {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ""}}
)


# gRPC name schemes whose targets carry no `//`: a socket path, or a list of addresses.
_SCHEMES_WITHOUT_AUTHORITY = ("unix:", "ipv4:", "ipv6:")


def _list_authority(address: str) -> str:
    """The first host of a fixed list (`ipv4:a:1,b:2`), which TLS checks the certificate
    against; gRPC would otherwise take the whole list for the host name."""
    if not address.startswith(("ipv4:", "ipv6:")) or "," not in address:
        return ""
    return address.partition(":")[2].split(",")[0]


def dns_target(address: str) -> str:
    """`host:port` as a dns-resolver target; targets with a scheme are kept as they are."""
    if "://" in address or address.startswith(_SCHEMES_WITHOUT_AUTHORITY):
        return address
    return f"dns:///{address}"


def open_channel(
    address: str,
    *,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    credentials: MeshCredentials | None = None,
    stream_window_bytes: int | None = None,
) -> grpc.aio.Channel:
    """A channel to a peer service, with the mesh's credentials where there are any.

    `stream_window_bytes` fixes how much of each response stream the transport takes in
    before this side reads it. Without it, gRPC's bandwidth probing grows the window to
    megabytes even for a stream nobody reads; a fixed window makes a stalled reader push
    back on the sender after that many bytes.
    """
    window_options: list[tuple[str, int]] = []
    if stream_window_bytes is not None:
        window_options = [
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", stream_window_bytes),
        ]
    options = [
        *window_options,
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
    target = dns_target(address)
    authority = _list_authority(address)
    if authority:
        options.append(("grpc.default_authority", authority))
    chain = [*client_tracing_interceptors(), *interceptors]
    if credentials is not None and credentials.token is not None:
        chain.extend(token_interceptors(credentials.token))
    if credentials is None or credentials.certificates is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=chain)
    return RenewingChannel(
        credentials.certificates,
        lambda tls: grpc.aio.secure_channel(target, tls, options=options, interceptors=chain),
    )


# Servers accept the clients' keepalive pings at the rate above.
SERVER_KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 2),
    ("grpc.http2.max_ping_strikes", 0),
]
