"""The floor under every hop: one grpc.aio unary call that does nothing, on this machine.

Run from the repository root: `.venv/bin/python -m bench.grpc_floor`. It times the standard
health Check (no work in the handler) on uvloop, first with client and server in one
process, then with the server in a process of its own as the mesh's services are, and
prints latency and CPU per call at concurrency 1 and 8. docs/benchmarks.md uses these
figures to show what the mesh's hops cost before any of its own code runs.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import time

import grpc
import grpc.aio
import psutil
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from llmmesh.testing.ports import free_port

WARMUP_CALLS = 500


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _serve(port: int) -> grpc.aio.Server:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server


async def _measure(port: int, concurrency: int, calls: int, server: psutil.Process | None) -> str:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()
        for _ in range(WARMUP_CALLS):
            await stub.Check(request)
        latencies_ms: list[float] = []

        async def worker() -> None:
            for _ in range(calls // concurrency):
                started = time.perf_counter()
                await stub.Check(request)
                latencies_ms.append((time.perf_counter() - started) * 1000)

        server_cpu = server.cpu_times() if server else None
        cpu, wall = _cpu_s(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall, cpu = time.perf_counter() - wall, _cpu_s() - cpu
    count = len(latencies_ms)
    latencies_ms.sort()
    client_ms = 1000 * cpu / count
    if server is not None and server_cpu is not None:
        after = server.cpu_times()
        server_ms = 1000 * (after.user + after.system - server_cpu.user - server_cpu.system) / count
        cpu_cell = f"{client_ms:.3f} + {server_ms:.3f}"
    else:
        cpu_cell = f"{client_ms:.3f} (both sides)"
    return (
        f"| {concurrency} | {count / wall:.0f} | {latencies_ms[count // 2]:.3f} | "
        f"{latencies_ms[int(count * 0.99)]:.3f} | {cpu_cell} |"
    )


async def _in_process(calls: int) -> list[str]:
    port = free_port()
    server = await _serve(port)
    try:
        return [f"| in one process {await _measure(port, c, calls, None)}" for c in (1, 8)]
    finally:
        await server.stop(0)


async def _across_processes(port: int, server: psutil.Process, calls: int) -> list[str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 15)
    return [f"| two processes {await _measure(port, c, calls, server)}" for c in (1, 8)]


async def _serve_forever(port: int) -> None:
    server = await _serve(port)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.grpc_floor", description=__doc__)
    parser.add_argument("--calls", type=int, default=8000, help="measured calls per row")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        uvloop.run(_serve_forever(arguments.serve))
        return
    rows = uvloop.run(_in_process(arguments.calls))
    port = free_port()
    child = subprocess.Popen([sys.executable, "-m", "bench.grpc_floor", "--serve", str(port)])
    try:
        rows += uvloop.run(_across_processes(port, psutil.Process(child.pid), arguments.calls))
    finally:
        child.terminate()
        child.wait(10)
    print(f"Command: `.venv/bin/python -m bench.grpc_floor`; grpcio {grpc.__version__}\n")
    print("| setup | concurrency | calls/s | p50 ms | p99 ms | CPU ms per call (client + server) |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
