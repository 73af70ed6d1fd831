"""What TLS between the services costs: the same mesh with plain text and with mTLS, in one run.

Run from the repository root: `.venv/bin/python -m bench.mesh.transport`. It starts two
meshes side by side, each with its own Redis and fake upstreams: one whose services talk
plain text (`LLMMESH_INSECURE_PEERS=true`), one whose services talk mTLS with the run's
certificates. Then, round after round, it measures each thing on one mesh and at once on
the other (alternating which goes first), so that whatever else loads the machine weighs
on both alike: a new connection to a peer and its first call (the handshake every channel
pays when a service starts or reconnects); the first token through the router at c=1;
each hop called on its own at c=1; and streamed throughput at c=64 with the services' CPU
per request. The table shows medians over the rounds and goes to the "TLS between
services" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import pathlib
import shlex
import statistics
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.mesh.environment import Environment, running_environment
from bench.mesh.report import SERVICES, machine_description, write_into
from bench.mesh.scenarios import HOP_TARGETS, SCENARIOS, Measured, Runner, Timing
from bench.mesh.stats import Distribution
from llmmesh.mesh import PeerSecurity

DOCUMENT = pathlib.Path("docs/benchmarks.md")
START = "<!-- bench.mesh.transport results: start -->"
END = "<!-- bench.mesh.transport results: end -->"
MODES: tuple[tuple[PeerSecurity, str], ...] = (("insecure", "plain text"), ("mtls", "mTLS"))
COMPARED = ("first-token-c1", "saturation-c64")
CONNECTIONS = 200


@dataclasses.dataclass
class ModeResult:
    """One round's measurements of one mesh."""

    connection: Distribution = dataclasses.field(default_factory=lambda: Distribution.of([]))
    scenarios: dict[str, Measured] = dataclasses.field(default_factory=dict)
    hops: dict[str, Measured] = dataclasses.field(default_factory=dict)


def connection_cost(env: Environment, samples: int = CONNECTIONS) -> Distribution:
    """A new connection to the ratelimiter and its first call (health: no allow-list), timed.

    A local subchannel pool per channel keeps gRPC from reusing an open connection, so
    each sample pays for its TCP connect and, with TLS, its handshake.
    """
    address = env.mesh.processes["ratelimiter"].address
    files = env.peer_credentials()
    options = [("grpc.use_local_subchannel_pool", 1)]
    credentials = None
    if "tls_ca_file" in files:
        credentials = grpc.ssl_channel_credentials(
            *(pathlib.Path(files[name]).read_bytes()
              for name in ("tls_ca_file", "tls_key_file", "tls_cert_file"))
        )  # fmt: skip
    request = health_pb2.HealthCheckRequest()
    times_ms = []
    for _ in range(samples):
        started = time.perf_counter()
        channel = (
            grpc.secure_channel(address, credentials, options=options)
            if credentials is not None
            else grpc.insecure_channel(address, options=options)
        )
        with channel:
            health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
        times_ms.append((time.perf_counter() - started) * 1000)
    return Distribution.of(times_ms)


def measure_round(
    runners: dict[str, Runner], connections: int, first: str
) -> dict[str, ModeResult]:
    """Every measurement once on each mesh, the two runs of each back to back."""
    order = sorted(runners, key=lambda mode: mode != first)
    results = {mode: ModeResult() for mode in runners}
    compared = [dataclasses.replace(s, with_direct=False) for s in SCENARIOS if s.name in COMPARED]
    for mode in order:
        results[mode].connection = connection_cost(runners[mode].environment, connections)
    for scenario in compared:
        for mode in order:
            results[mode].scenarios[scenario.name] = runners[mode].scenario(scenario).mesh
    for target in HOP_TARGETS:
        for mode in order:
            results[mode].hops[target] = runners[mode].hop(target)
    return results


def _cpu_ms_per_request(measured: Measured) -> float:
    rate = measured.result.requests_per_s
    busy = sum(measured.usage[name].cpu_percent for name in SERVICES if name in measured.usage)
    return 10 * busy / rate if rate else math.nan


HOP_LABELS = {
    "ratelimiter": ("ratelimiter Reserve + Settle", "total"),
    "cache-lookup": ("cache Lookup (miss)", "total"),
    "provider": ("provider Generate, first token", "first_token"),
}


def measures(result: ModeResult) -> list[tuple[str, float, str]]:
    """(label, value, format) of every figure the table compares."""
    first = result.scenarios["first-token-c1"].result
    saturated = result.scenarios["saturation-c64"]
    rows = [
        ("new connection to a peer + first call, p50 (ms)", result.connection.p50_ms, "{:.2f}"),
        ("new connection to a peer + first call, p99 (ms)", result.connection.p99_ms, "{:.2f}"),
        ("router first token, c=1, p50 (ms)", first.first_token.p50_ms, "{:.2f}"),
        ("router first token, c=1, p99 (ms)", first.first_token.p99_ms, "{:.2f}"),
        ("router whole answer, c=1, p50 (ms)", first.total.p50_ms, "{:.2f}"),
    ]
    for target in HOP_TARGETS:
        label, field = HOP_LABELS[target]
        value = getattr(result.hops[target].result, field).p50_ms
        rows.append((f"hop on its own, c=1: {label}, p50 (ms)", value, "{:.2f}"))
    rows += [
        ("streamed throughput, c=64 (req/s)", saturated.result.requests_per_s, "{:.1f}"),
        ("CPU of the four services per request, c=64 (ms)",
         _cpu_ms_per_request(saturated), "{:.2f}"),
    ]  # fmt: skip
    return rows


def _errors(result: ModeResult) -> int:
    runs = (*result.scenarios.values(), *result.hops.values())
    return sum(measured.result.errors for measured in runs)


def render(results: dict[str, list[ModeResult]], *, command: str, settings: str) -> str:
    """One row per measure: the median over the rounds of each mode, and the difference."""
    columns = {mode: [measures(result) for result in rounds] for mode, rounds in results.items()}
    errors = sum(_errors(result) for rounds in results.values() for result in rounds)
    lines = [
        START,
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine_description()}",
        "",
        f"Settings: {settings}; errors in all runs: {errors}",
        "",
        "| measure | plain text | mTLS | mTLS minus plain |",
        "|---|---|---|---|",
    ]
    for index, (label, _, style) in enumerate(columns["insecure"][0]):
        without = statistics.median(rows[index][1] for rows in columns["insecure"])
        with_tls = statistics.median(rows[index][1] for rows in columns["mtls"])
        difference = with_tls - without
        lines.append(
            f"| {label} | {style.format(without)} | {style.format(with_tls)} | "
            f"{style.replace('{:', '{:+').format(difference)} |"
        )
    return "\n".join([*lines, "", END]) + "\n"


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mesh.transport", description=__doc__)
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--warmup-s", type=float, default=1.0)
    parser.add_argument(
        "--rounds", type=int, default=3,
        help="how often every measurement is taken on each mesh; the table shows medians",
    )  # fmt: skip
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--output", type=pathlib.Path, default=DOCUMENT)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--log", type=pathlib.Path, default=pathlib.Path("/tmp/llmmesh-bench-transport.log")
    )
    arguments = parser.parse_args()
    timing = Timing(duration_s=arguments.duration_s, warmup_s=arguments.warmup_s)
    results: dict[str, list[ModeResult]] = {mode: [] for mode, _ in MODES}
    with contextlib.ExitStack() as stack:
        runners = {}
        for mode, label in MODES:
            _progress(f"== starting the mesh whose services talk {label}")
            env = stack.enter_context(
                running_environment("openai", {}, arguments.log, sys.executable, mode)
            )
            runners[mode] = Runner(env, timing, _progress)
        for round_number in range(arguments.rounds):
            first = MODES[round_number % len(MODES)][0]
            _progress(f"== round {round_number + 1}, {first} first")
            for mode, result in measure_round(runners, arguments.connections, first).items():
                results[mode].append(result)
    settings = (
        f"fake OpenAI upstream (instant, 16 chunks); {timing.duration_s:g} s measured after "
        f"{timing.warmup_s:g} s warm-up per run; medians of {arguments.rounds} rounds, the two "
        "meshes running side by side and measured back to back; Redis backends; services from this "
        f"interpreter's environment; {arguments.connections} new connections; the router's own "
        "port is plain text in both"
    )
    command = shlex.join([".venv/bin/python", "-m", "bench.mesh.transport", *sys.argv[1:]])
    rendered = render(results, command=command, settings=settings)
    print(rendered)
    if not arguments.no_write:
        write_into(
            arguments.output, rendered, start=START, end=END, heading="## TLS between services"
        )
        _progress(f"wrote {arguments.output}")


if __name__ == "__main__":
    main()
