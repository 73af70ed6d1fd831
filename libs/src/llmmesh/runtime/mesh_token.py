"""The mesh token: a shared secret that proves mesh membership where mTLS is off.

It comes from `LLMMESH_MESH_TOKEN_FILE` (re-read when the file changes, so it rotates
without a restart) or from `LLMMESH_MESH_TOKEN`. A file may hold several tokens, one per
line: every one is accepted and the first is the one sent, so a rotation adds the new token
everywhere, then moves it first, then drops the old one. Clients send it in the
`llmmesh-mesh-token` metadata of every call; servers compare it in constant time. Without
TLS it crosses the network in clear text, so it guards against callers that cannot see the
mesh's traffic, not against ones that can.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio

from llmmesh.runtime.watched_files import WatchedFiles

METADATA_KEY = "llmmesh-mesh-token"
MIN_TOKEN_CHARS = 16


class TokenConfigError(ValueError):
    """A token that cannot be used; the message never contains the token."""


def parse_tokens(text: bytes) -> tuple[bytes, ...]:
    tokens = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not tokens:
        raise TokenConfigError("no token in it")
    for token in tokens:
        # Metadata values outside printable ASCII would need a -bin key.
        if not (token.isascii() and all(0x21 <= byte <= 0x7E for byte in token)):
            raise TokenConfigError("a token may hold printable ASCII without spaces only")
        if len(token) < MIN_TOKEN_CHARS:
            raise TokenConfigError(f"a token needs at least {MIN_TOKEN_CHARS} characters")
    return tokens


def _read_tokens(path: str) -> tuple[bytes, ...]:
    with open(path, "rb") as file:
        return parse_tokens(file.read())


class MeshToken:
    """The accepted tokens and the one to send; see the module docstring."""

    def __init__(self, tokens: Callable[[], tuple[bytes, ...]]) -> None:
        self._tokens = tokens

    @classmethod
    def from_file(cls, path: str) -> MeshToken:
        watch = WatchedFiles([path], lambda: _read_tokens(path), what="mesh token")
        return cls(lambda: watch.value)

    @classmethod
    def from_value(cls, value: str) -> MeshToken:
        tokens = parse_tokens(value.encode())
        return cls(lambda: tokens)

    def accepts(self, presented: str | bytes | None) -> bool:
        if not presented:
            return False
        candidate = presented.encode() if isinstance(presented, str) else presented
        accepted = False
        # Every token is compared, so the time taken does not tell which one matched.
        for token in self._tokens():
            accepted |= hmac.compare_digest(candidate, token)
        return accepted

    def outgoing(self) -> str:
        return self._tokens()[0].decode()


def _with_token(details: grpc.aio.ClientCallDetails, token: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()), (METADATA_KEY, token))
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: MeshToken) -> None:
        self._token = token

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_token(details, self._token.outgoing()), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: MeshToken) -> None:
        self._token = token

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_token(details, self._token.outgoing()), request)


def token_interceptors(token: MeshToken) -> list[grpc.aio.ClientInterceptor]:
    """Client interceptors that send the token with every unary and server-streaming call."""
    return [_UnaryUnary(token), _UnaryStream(token)]
