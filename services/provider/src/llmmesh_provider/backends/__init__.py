"""One module per upstream kind, each implementing the ChatBackend and/or Embedder protocol;
what their HTTP connections share is here."""

import socket

# The kernel buffer of an upstream connection, fixed rather than autotuned: when a caller
# stops reading and the provider with it, the upstream is held back after this much (plus its
# own send buffer). Autotuning grows it to tens of MB on a fast link; a fixed 1 MiB still
# carries 10 MB/s over a 100 ms round trip, far more than a token stream needs. The kernel
# caps it at net.core.rmem_max.
UPSTREAM_RECEIVE_BUFFER_BYTES = 1024 * 1024
UPSTREAM_SOCKET_OPTIONS = [(socket.SOL_SOCKET, socket.SO_RCVBUF, UPSTREAM_RECEIVE_BUFFER_BYTES)]
