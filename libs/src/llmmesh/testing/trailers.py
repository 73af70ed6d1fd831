"""The size of a call's trailer as it travels, for tests that bound it."""

from __future__ import annotations

import base64
from typing import Any


def trailer_wire_bytes(call: Any) -> int:
    """Bytes of the status and trailing metadata on the wire: names and values, grpc-message
    percent-encoded as gRPC sends it, binary values base64-encoded. `call` is a finished
    call or the grpc.RpcError it raised."""
    message = (call.details() or "").encode()
    size = len("grpc-status") + 2 + len("grpc-message")
    size += sum(1 if 0x20 <= byte <= 0x7E and byte != 0x25 else 3 for byte in message)
    for key, value in call.trailing_metadata() or ():
        raw = value if isinstance(value, bytes) else value.encode()
        size += len(key) + (len(base64.b64encode(raw)) if key.endswith("-bin") else len(raw))
    return size
