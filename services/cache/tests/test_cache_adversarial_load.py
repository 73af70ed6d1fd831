"""One tenant's adversarial prompts never stall another tenant's lookups, nor swell the cache.

The cache runs as its own process (`python -m llmmesh_cache`) on a real redis-server. An
attacker tenant stores and looks up, over and over and several at a time, the prompts that
used to take the cache down: three blocks of words with the last two swapped, 1 MB of a
character NFKC expands 18-fold, and 10,000 numbers (each also in a size just under the
verification cap, so the checks themselves run on the largest input they accept).
Meanwhile a victim tenant looks up a small prompt every few milliseconds. Asserted: the
victim's p99 latency, that health answers throughout, and the cache process's RSS growth.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import grpc
import psutil
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llmmesh.cache.v1 import cache_service_pb2, cache_service_pb2_grpc
from llmmesh.common.v1 import caching_pb2
from llmmesh.testing.ports import free_port
from llmmesh.testing.redis_server import RedisServer
from llmmesh_cache.testing import answer, scope

ATTACK_S = 20.0
ATTACKERS = 3
VICTIM_P99_MS = 50.0
MAX_RSS_GROWTH_MB = 150.0
START_TIMEOUT_S = 60.0


# Each attacker is its own process, so its client-side work does not slow the victim's
# client. It runs rounds of every adversarial pair for the given seconds (at least one
# round) and prints what went wrong.
ATTACKER = textwrap.dedent(
    """
    import json, sys, time
    import grpc
    from llmmesh.cache.v1 import cache_service_pb2, cache_service_pb2_grpc
    from llmmesh.common.v1 import caching_pb2
    from llmmesh_cache.testing import answer, scope

    def words(count, offset, letters):
        return [f"{letters}{offset + n}" for n in range(count)]

    def block_swap(sizes, letters):
        a, b, c = (words(size, 10_000 * i, letters) for i, size in enumerate(sizes))
        return " ".join(a + b + c), " ".join(a + c + b)

    numbers = " ".join(str(n) for n in range(10_000))
    pairs = [
        block_swap((300, 450, 450), "word"),  # 8.4 KB: over the cap, exact-only
        block_swap((250, 300, 300), "w"),  # under the cap: every check runs on it
        ("\ufdfa" * 333_000, "\ufdfa" * 333_001),  # 1 MB as UTF-8
        ("\ufdfa" * 450, "\ufdfa" * 451),  # short, but over the cap once normalized
        (numbers, numbers + " 10000"),
        (" ".join(str(n) for n in range(1700)), " ".join(str(n) for n in range(1, 1701))),
    ]
    requests = [
        (cache_service_pb2.StoreRequest(scope=scope(s, tenant="attacker"), answer=answer("a")),
         cache_service_pb2.LookupRequest(scope=scope(a, tenant="attacker")))
        for s, a in pairs
    ]
    address, seconds = sys.argv[1], float(sys.argv[2])
    failures = []
    options = [("grpc.max_send_message_length", 16 << 20)]
    with grpc.insecure_channel(address, options=options) as channel:
        stub = cache_service_pb2_grpc.CacheServiceStub(channel)
        until = time.monotonic() + seconds
        while True:
            for store, lookup in requests:
                try:
                    stub.Store(store, timeout=30)
                    found = stub.Lookup(lookup, timeout=30)
                except grpc.RpcError as error:
                    failures.append(error.code().name)
                    continue
                if found.status == caching_pb2.CACHE_STATUS_SEMANTIC:
                    failures.append("a near miss was served")
            if time.monotonic() > until:
                break
    print(json.dumps(failures))
    """
)


def run_attackers(address: str, count: int, seconds: float) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", ATTACKER, address, str(seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]


def failures_of(attackers: list[subprocess.Popen[str]]) -> list[str]:
    failures: list[str] = []
    for attacker in attackers:
        out, err = attacker.communicate(timeout=120)
        assert attacker.returncode == 0, err[-2000:]
        failures += json.loads(out.strip().splitlines()[-1])
    return failures


@contextlib.contextmanager
def cache_process(redis_url: str, folder: pathlib.Path) -> Iterator[tuple[str, psutil.Process]]:
    policy = {
        "tenants": [{"name": "attacker"}, {"name": "victim"}],
        "cache": {
            "defaults": {"mode": "exact"},
            "tenants": {"attacker": {"mode": "semantic", "similarity_threshold": 0.0}},
        },
    }
    policy_file = folder / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    port = free_port()
    env = {
        **os.environ,
        "LLMMESH_CACHE_PORT": str(port),
        "LLMMESH_CACHE_LISTEN_HOST": "127.0.0.1",
        "LLMMESH_REDIS_URL": redis_url,
        "LLMMESH_POLICY_FILE": str(policy_file),
        "LLMMESH_CACHE_EMBEDDER": "simulated",
        # Load, not who may call: the test calls the cache directly, as no peer could.
        "LLMMESH_INSECURE_PEERS": "true",
    }
    with (folder / "cache.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmmesh_cache"], env=env, stdout=log, stderr=log
        )
    address = f"127.0.0.1:{port}"
    try:
        _wait_serving(address, process)
        yield address, psutil.Process(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_serving(address: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert process.poll() is None, "the cache process exited"
            with contextlib.suppress(grpc.RpcError):
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.1)
    raise TimeoutError("the cache did not report SERVING")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def test_adversarial_prompts_do_not_stall_other_tenants_or_swell_the_cache(
    redis_server: RedisServer, redis_url: str, tmp_path: pathlib.Path
) -> None:
    with (
        cache_process(redis_url, tmp_path) as (address, process),
        grpc.insecure_channel(address) as channel,
    ):
        stub = cache_service_pb2_grpc.CacheServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        small = scope("What is the capital of Peru?", tenant="victim")
        stub.Store(cache_service_pb2.StoreRequest(scope=small, answer=answer("Lima.")))
        lookup = cache_service_pb2.LookupRequest(scope=small)
        # One round of everything first, so lazy imports and dictionaries are loaded.
        failures = failures_of(run_attackers(address, 1, 0.0))
        rss_before = process.memory_info().rss
        attackers = run_attackers(address, ATTACKERS, ATTACK_S)
        latencies_ms, health_ms = [], []
        while any(attacker.poll() is None for attacker in attackers):
            started = time.perf_counter()
            found = stub.Lookup(lookup, timeout=5)
            latencies_ms.append((time.perf_counter() - started) * 1000)
            assert found.status == caching_pb2.CACHE_STATUS_EXACT
            started = time.perf_counter()
            health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            health_ms.append((time.perf_counter() - started) * 1000)
            time.sleep(0.005)
        failures += failures_of(attackers)
        rss_growth_mb = (process.memory_info().rss - rss_before) / 2**20

    print(
        f"victim lookups {len(latencies_ms)}: p50 {percentile(latencies_ms, 0.5):.1f} ms, "
        f"p99 {percentile(latencies_ms, 0.99):.1f} ms; health p99 "
        f"{percentile(health_ms, 0.99):.1f} ms; cache RSS growth {rss_growth_mb:.1f} MB"
    )
    assert not failures, failures[:5]
    assert len(latencies_ms) > 100
    assert percentile(latencies_ms, 0.99) < VICTIM_P99_MS
    assert percentile(health_ms, 0.99) < VICTIM_P99_MS
    assert rss_growth_mb < MAX_RSS_GROWTH_MB
