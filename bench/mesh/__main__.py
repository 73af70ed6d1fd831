"""What the mesh adds to every call, against calling the upstream directly in the same run.

Run from the repository root: `.venv/bin/python -m bench.mesh`. It starts its own
redis-server, two fake OpenAI upstreams (instant, and paced: first token after 100 ms, then
10 ms per token; 16 chunks each) and the four services on the Redis backends, then runs
every scenario twice, once straight at the upstream and once through the router, each in a
separate load-generator process, and prints markdown results; a full run also writes them
into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import signal
import sys

from bench.mesh.deployed import services_python
from bench.mesh.environment import running_environment
from bench.mesh.report import render, write_into
from bench.mesh.scenarios import SCENARIOS, Results, Runner, Timing

DEFAULT_OUTPUT = pathlib.Path("docs/benchmarks.md")
QUICK = Timing(duration_s=2.0, warmup_s=0.5)
FULL = Timing(duration_s=10.0, warmup_s=2.0)


def _arguments() -> argparse.Namespace:
    names = [scenario.name for scenario in SCENARIOS]
    parser = argparse.ArgumentParser(prog="python -m bench.mesh", description=__doc__)
    parser.add_argument(
        "--upstream", choices=("openai", "simulated"), default="openai",
        help="fake OpenAI server processes (direct = raw HTTP to them), or the provider's "
        "simulated backend (direct = the provider service's Generate)",
    )  # fmt: skip
    parser.add_argument(
        "--scenario", action="append", choices=names, help="repeatable; default all"
    )
    parser.add_argument("--no-hops", action="store_true", help="skip the per-hop breakdown")
    parser.add_argument(
        "--duration-s", type=float, help=f"measured seconds per run ({FULL.duration_s})"
    )
    parser.add_argument(
        "--warmup-s", type=float, help=f"unmeasured seconds per run ({FULL.warmup_s})"
    )
    parser.add_argument(
        "--quick", action="store_true",
        help=f"{QUICK.duration_s:g} s runs after {QUICK.warmup_s:g} s warm-up; writes no docs "
        "unless --output is given",
    )  # fmt: skip
    parser.add_argument(
        "--services-from", choices=("deployed", "current"), default="deployed",
        help="run the services from an environment built like their images (created as "
        ".venv-bench-services), or from this interpreter's development environment",
    )  # fmt: skip
    parser.add_argument(
        "--peers", choices=("mtls", "token", "insecure"), default="mtls",
        help="how the services talk to each other: mTLS with certificates made for the run "
        "(as llmmesh up), a mesh token, or plain text (LLMMESH_INSECURE_PEERS=true); "
        "python -m bench.mesh.transport compares plain text and mTLS side by side",
    )  # fmt: skip
    parser.add_argument(
        "--service-env", action="append", default=[], metavar="NAME=VALUE",
        help="extra environment for the four services (repeatable), e.g. OTEL_SDK_DISABLED=true",
    )  # fmt: skip
    parser.add_argument("--output", type=pathlib.Path, help=f"default {DEFAULT_OUTPUT} (full runs)")
    parser.add_argument(
        "--log", type=pathlib.Path, default=pathlib.Path("/tmp/llmmesh-bench-services.log"),
        help="where the services and upstreams log",
    )  # fmt: skip
    return parser.parse_args()


def _service_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator:
            raise SystemExit(f"--service-env wants NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # Unwinds through the context managers, which stop every process the run started.
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    arguments = _arguments()
    base = QUICK if arguments.quick else FULL
    timing = Timing(
        duration_s=arguments.duration_s or base.duration_s,
        warmup_s=arguments.warmup_s if arguments.warmup_s is not None else base.warmup_s,
    )
    chosen = [s for s in SCENARIOS if not arguments.scenario or s.name in arguments.scenario]
    service_env = _service_env(arguments.service_env)
    results = Results()
    python = services_python(_progress) if arguments.services_from == "deployed" else sys.executable
    with running_environment(
        arguments.upstream, service_env, arguments.log, python, arguments.peers
    ) as env:
        runner = Runner(env, timing, _progress)
        results.idle_rss_mib = runner.idle_rss_mib()
        for scenario in chosen:
            results.scenarios.append(runner.scenario(scenario))
        if not arguments.no_hops:
            results.hops = runner.hops()
        results.rss_after_load_mib = runner.rss_now_mib()
    settings = (
        f"upstream `{arguments.upstream}`; {timing.duration_s:g} s measured after "
        f"{timing.warmup_s:g} s warm-up per run; Redis backends for ratelimiter and cache; "
        f"services run from the {arguments.services_from} environment; "
        f"between services: {arguments.peers}; "
        f"service env overrides: {service_env or 'none'}"
    )
    direct_label = (
        "direct (raw httpx SSE to the fake)"
        if arguments.upstream == "openai"
        else "direct (provider Generate)"
    )
    command = shlex.join([".venv/bin/python", "-m", "bench.mesh", *sys.argv[1:]])
    rendered = render(results, command=command, settings=settings, direct_label=direct_label)
    print(rendered)
    output = arguments.output or (None if arguments.quick else DEFAULT_OUTPUT)
    if output is not None:
        write_into(output, rendered)
        _progress(f"wrote {output}")


if __name__ == "__main__":
    main()
