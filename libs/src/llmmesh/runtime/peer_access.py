"""Who may call an internal service: a server interceptor that checks the peer of every call.

With a mesh token configured, a call whose `llmmesh-mesh-token` is missing or wrong is
UNAUTHENTICATED before its request is even parsed. With mTLS, the identity in the client
certificate must be on the RPC's allow-list, else PERMISSION_DENIED (a caller without a
certificate never gets this far: the TLS handshake refuses it). Health RPCs are open to
anyone, for probes; reflection needs an authenticated peer but no allow-list. A refused
call is logged at most once per minute for each caller address and reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
import grpc.aio
import structlog

from llmmesh.runtime.errors import RpcFailure, abort
from llmmesh.runtime.log_throttle import LogThrottle
from llmmesh.runtime.mesh_token import METADATA_KEY, MeshToken
from llmmesh.runtime.peer_identity import AllowedPeers, CallerRules, certificate_identity

log = structlog.get_logger(__name__)

OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
# Any authenticated peer may use these, whatever the allow-list says.
ANY_PEER_PREFIXES = ("/grpc.reflection.",)

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
Check = Callable[[Context], Awaitable[None]]

_HANDLER_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}
_BEHAVIOR_NAMES = {
    (False, False): "unary_unary",
    (False, True): "unary_stream",
    (True, False): "stream_unary",
    (True, True): "stream_stream",
}


def _peer_address(context: Context) -> str:
    """`ipv4:10.0.0.7` from `ipv4:10.0.0.7:53412`: one caller whatever port it comes from."""
    return str(context.peer()).rpartition(":")[0]


def _metadata_value(metadata: Any, key: str) -> str | bytes | None:
    for name, value in metadata or ():
        if name == key:
            return value  # type: ignore[no-any-return]
    return None


def _guarded(
    handler: grpc.RpcMethodHandler, check: Check, *, parse_request: bool = True
) -> grpc.RpcMethodHandler:
    """The same RPC with `check` (which may abort) run before its behavior.

    `parse_request=False` leaves the request as bytes: a call that is refused anyway
    should not cost a parse.
    """
    kind = (bool(handler.request_streaming), bool(handler.response_streaming))
    behavior = getattr(handler, _BEHAVIOR_NAMES[kind])
    guarded: Callable[..., Any]
    if handler.response_streaming:

        async def guarded_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            await check(context)
            async for response in behavior(request, context):
                yield response

        guarded = guarded_stream
    else:

        async def guarded_unary(request: Any, context: Context) -> Any:
            await check(context)
            return await behavior(request, context)

        guarded = guarded_unary
    return _HANDLER_FACTORIES[kind](
        guarded,
        request_deserializer=handler.request_deserializer if parse_request else None,
        response_serializer=handler.response_serializer,
    )


class PeerAccessInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Admits each call only from an authenticated, allowed mesh peer; see the module doc."""

    def __init__(
        self,
        rules: CallerRules,
        *,
        token: MeshToken | None,
        check_certificates: bool,
        throttle: LogThrottle | None = None,
    ) -> None:
        self._rules = rules
        self._token = token
        self._check_certificates = check_certificates
        self._throttle = throttle or LogThrottle()
        self._allowed: dict[str, AllowedPeers] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        if self._token is not None:
            presented = _metadata_value(details.invocation_metadata, METADATA_KEY)
            if not self._token.accepts(presented):
                failure = RpcFailure(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "the caller is not a mesh peer: missing or wrong mesh token",
                    reason="PEER_UNAUTHENTICATED",
                )
                return _guarded(handler, self._refusal(method, failure), parse_request=False)
        if not self._check_certificates or method.startswith(ANY_PEER_PREFIXES):
            return handler
        return _guarded(handler, self._identity_check(method))

    def _identity_check(self, method: str) -> Check:
        method_name = method.rpartition("/")[2]
        allowed = self._allowed.get(method_name)
        if allowed is None:
            allowed = self._allowed[method_name] = self._rules.allowed(method_name)

        async def check(context: Context) -> None:
            identity = certificate_identity(context.auth_context())
            if identity is None:
                await self._refuse(
                    context,
                    method,
                    RpcFailure(
                        grpc.StatusCode.UNAUTHENTICATED,
                        "the caller presented no client certificate",
                        reason="PEER_UNAUTHENTICATED",
                    ),
                )
            elif not allowed.allows(identity):
                await self._refuse(
                    context,
                    method,
                    RpcFailure(
                        grpc.StatusCode.PERMISSION_DENIED,
                        f"{identity} may not call {method_name}",
                        reason="PEER_NOT_ALLOWED",
                        metadata={"identity": identity, "method": method_name},
                    ),
                    identity,
                )

        return check

    def _refusal(self, method: str, failure: RpcFailure) -> Check:
        async def refuse(context: Context) -> None:
            await self._refuse(context, method, failure)

        return refuse

    async def _refuse(
        self, context: Context, method: str, failure: RpcFailure, identity: str = ""
    ) -> None:
        peer = _peer_address(context)
        held_back = self._throttle.admit((peer, failure.reason))
        if held_back is not None:
            log.warning(
                "peer_refused",
                peer=peer,
                identity=identity,
                method=method,
                reason=failure.reason,
                refused_quietly_since_last=held_back,
            )
        await abort(context, failure)
