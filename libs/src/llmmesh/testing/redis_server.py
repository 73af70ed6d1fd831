"""A real redis-server (single node or a three-master cluster) that a test owns.

Tests start their own server on a free port so they can kill and restart it to drill
outages. Persistence is off: a restarted server comes back empty, like a lost node. With a
certificate it serves TLS only (`rediss://`), as a managed Redis does.
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import redis

from llmmesh.testing.ports import free_port

if TYPE_CHECKING:
    from llmmesh.local_ca import IssuedCertificate

CLUSTER_BUS_PORT_OFFSET = 10000

START_TIMEOUT_S = 10.0


def _redis_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found; install Redis (apt-get install redis-server)")
    return path


class RedisServer:
    """One redis-server process on 127.0.0.1; stop() and start() keep the same port."""

    def __init__(
        self, port: int | None = None, *extra_args: str, tls: IssuedCertificate | None = None
    ) -> None:
        self.port = port or free_port()
        self._extra_args = extra_args
        self.tls = tls
        self._workdir = pathlib.Path(tempfile.mkdtemp(prefix="llmmesh-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def _listen_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port", "0", "--tls-port", str(self.port),
            "--tls-cert-file", str(self.tls.cert_file), "--tls-key-file", str(self.tls.key_file),
            "--tls-ca-cert-file", str(self.tls.ca_file), "--tls-auth-clients", "no",
        ]  # fmt: skip

    def client_options(self) -> dict[str, Any]:
        """What a redis-py client needs to reach it (TLS verified against the test CA)."""
        if self.tls is None:
            return {}
        return {"ssl": True, "ssl_ca_certs": str(self.tls.ca_file)}

    def start(self) -> None:
        args = [
            _redis_binary("redis-server"), *self._listen_args(), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self._workdir),
            *self._extra_args,
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_until_answering()

    def stop(self) -> None:
        """Kills the server at once, as a crash would."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        client = redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=0.5, **self.client_options()
        )
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not start on {self.port}") from None
                    time.sleep(0.05)
        finally:
            client.close()


class RedisCluster:
    """Three cluster-enabled masters (no replicas) joined into one cluster."""

    def __init__(self, masters: int = 3) -> None:
        self.nodes = [
            RedisServer(free_port(65535 - CLUSTER_BUS_PORT_OFFSET), "--cluster-enabled", "yes",
                        "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "2000")
            for _ in range(masters)
        ]  # fmt: skip

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [_redis_binary("redis-cli"), "--cluster", "create", *addresses,
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._wait_until_ok()

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def _wait_until_ok(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        client = redis.Redis(host="127.0.0.1", port=self.nodes[0].port)
        try:
            while _cluster_state(client) != "ok":
                if time.monotonic() > deadline:
                    raise RuntimeError("redis cluster did not reach cluster_state:ok")
                time.sleep(0.1)
        finally:
            client.close()


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def running_redis_cluster() -> Iterator[RedisCluster]:
    cluster = RedisCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.close()


def _cluster_state(client: redis.Redis) -> str:
    info: dict[str, str] = client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
    return info.get("cluster_state", "")
