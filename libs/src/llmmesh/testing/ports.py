"""Free TCP ports on the loopback interface."""

import socket

# Redis Cluster listens on port + 10000 for its bus, so cluster nodes need room above.
HIGHEST_PORT = 65535


def free_port(highest: int = HIGHEST_PORT) -> int:
    """A port nothing listens on right now, no higher than `highest`."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port <= highest:
            return port
