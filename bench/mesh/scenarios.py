"""The benchmark's scenarios, each run through the mesh and against its direct baseline."""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Mapping

import psutil

from bench.mesh.environment import API_KEY, TENANT, Environment, Upstream
from bench.mesh.loadgen import LoadSpec
from bench.mesh.resources import ProcessUsage, UsageMeter, rss_mib
from bench.mesh.stats import RunResult

LOAD_TIMEOUT_MARGIN_S = 60.0
# Time for services to settle after start before their idle memory is read.
IDLE_SETTLE_S = 2.0


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    # What the scenario shows, for the report.
    purpose: str
    pacing: str
    concurrency: int
    mesh_target: str = "router-stream"
    prompt: str = "unique"
    with_direct: bool = True


SCENARIOS = (
    Scenario("first-token-c1", "added latency of one streamed call", "instant", 1),
    # Its direct baseline streams; the whole answer is what a unary call waits for.
    Scenario("unary-c1", "added latency of one unary call", "instant", 1,
             mesh_target="router-unary"),
    Scenario("cache-hit-c1", "an exact cache hit end to end", "instant", 1, prompt="fixed",
             with_direct=False),
    Scenario("saturation-c64", "throughput at saturation", "instant", 64),
    Scenario("paced-c16", "a paced upstream at moderate load", "paced", 16),
    Scenario("paced-c64", "token relay at 64 concurrent streams", "paced", 64),
)  # fmt: skip

# Each hop called on its own, one call at a time, on the instant upstream.
HOP_TARGETS = ("ratelimiter", "cache-lookup", "provider")
# Targets that call an internal service directly, with the router's mesh credentials.
DIRECT_TO_PEERS = frozenset(HOP_TARGETS)


@dataclasses.dataclass(frozen=True)
class Measured:
    """One load run and what each process used during it."""

    result: RunResult
    usage: Mapping[str, ProcessUsage]
    machine_busy_percent: float
    # The load generator process over its whole life (start-up and warm-up included).
    load_generator_percent: float

    @property
    def outside_percent(self) -> float:
        """CPU the machine spent on anything but the benchmark's own processes."""
        ours = sum(u.cpu_percent for u in self.usage.values()) + self.load_generator_percent
        return max(0.0, self.machine_busy_percent - ours)


@dataclasses.dataclass
class ScenarioOutcome:
    scenario: Scenario
    mesh: Measured
    direct: Measured | None


@dataclasses.dataclass
class Results:
    scenarios: list[ScenarioOutcome] = dataclasses.field(default_factory=list)
    hops: dict[str, Measured] = dataclasses.field(default_factory=dict)
    idle_rss_mib: dict[str, float] = dataclasses.field(default_factory=dict)
    rss_after_load_mib: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Timing:
    duration_s: float
    warmup_s: float


class Runner:
    """Runs load processes against the environment and meters every process meanwhile."""

    def __init__(self, env: Environment, timing: Timing, progress: Callable[[str], None]) -> None:
        self._env = env
        self._timing = timing
        self._progress = progress
        self._services = {
            name: psutil.Process(member.process.pid) for name, member in env.mesh.processes.items()
        }
        self._others: dict[str, psutil.Process] = {}
        for child in psutil.Process().children():
            if child.name() == "redis-server":
                self._others["redis"] = child
            elif "llmmesh.testing.fake_upstreams" in child.cmdline():
                self._others[_upstream_label(child.cmdline())] = child

    @property
    def environment(self) -> Environment:
        return self._env

    def idle_rss_mib(self) -> dict[str, float]:
        time.sleep(IDLE_SETTLE_S)
        return rss_mib(self._services)

    def rss_now_mib(self) -> dict[str, float]:
        return rss_mib(self._services)

    def measure(self, spec: LoadSpec) -> Measured:
        self._progress(f"  {spec.target} c={spec.concurrency} ...")
        meter = UsageMeter({**self._services, **self._others})
        children_cpu_before_s = _children_cpu_s()
        with meter.measuring():
            completed = subprocess.run(
                [sys.executable, "-m", "bench.mesh.loadgen", spec.to_argument()],
                capture_output=True,
                timeout=spec.warmup_s + spec.duration_s + LOAD_TIMEOUT_MARGIN_S,
                check=False,
            )
        if completed.returncode != 0:
            raise RuntimeError(
                f"load generator failed ({completed.returncode}): {completed.stderr.decode()}"
            )
        result = RunResult.from_json(json.loads(completed.stdout.decode().splitlines()[-1]))
        self._progress(
            f"    {result.requests_per_s:.1f} req/s, first token p50 "
            f"{result.first_token.p50_ms:.2f} ms, errors {result.errors}"
        )
        load_generator_percent = 100 * (_children_cpu_s() - children_cpu_before_s) / meter.wall_s
        return Measured(result, meter.usage, meter.machine_busy_percent, load_generator_percent)

    def _spec(self, target: str, upstream: Upstream, concurrency: int, **extra: str) -> LoadSpec:
        mesh = self._env.mesh
        addresses = {
            "router-stream": mesh.router_address,
            "router-unary": mesh.router_address,
            "provider": mesh.processes["provider"].address,
            "ratelimiter": mesh.processes["ratelimiter"].address,
            "cache-lookup": mesh.processes["cache"].address,
            "upstream-http": upstream.base_url,
        }
        models = {
            "router-stream": upstream.catalog_model,
            "router-unary": upstream.catalog_model,
            "provider": upstream.provider_model,
            "upstream-http": upstream.provider_model,
        }
        credentials = self._env.peer_credentials() if target in DIRECT_TO_PEERS else {}
        return LoadSpec(
            target=target,
            address=addresses[target],
            concurrency=concurrency,
            duration_s=self._timing.duration_s,
            warmup_s=self._timing.warmup_s,
            model=models.get(target, upstream.catalog_model),
            instance=upstream.provider_instance,
            api_key=API_KEY,
            tenant=TENANT,
            **credentials,
            **extra,
        )

    def direct_target(self) -> str:
        """Straight to the fake's HTTP API; for the simulated upstream, the provider service."""
        return "upstream-http" if self._env.kind == "openai" else "provider"

    def scenario(self, scenario: Scenario) -> ScenarioOutcome:
        self._progress(f"{scenario.name}: {scenario.purpose}")
        upstream = self._env.upstreams[scenario.pacing]
        direct = None
        if scenario.with_direct:
            direct = self.measure(self._spec(self.direct_target(), upstream, scenario.concurrency))
        mesh = self.measure(
            self._spec(scenario.mesh_target, upstream, scenario.concurrency, prompt=scenario.prompt)
        )
        return ScenarioOutcome(scenario, mesh, direct)

    def hops(self) -> dict[str, Measured]:
        self._progress("hops: each service called on its own, c=1")
        return {target: self.hop(target) for target in HOP_TARGETS}

    def hop(self, target: str) -> Measured:
        """One service called on its own, one call at a time, on the instant upstream."""
        return self.measure(self._spec(target, self._env.upstreams["instant"], 1))


def _upstream_label(command: list[str]) -> str:
    """`upstream-instant` or `upstream-paced`, from the fake's first-token delay flag."""
    delay_ms = float(command[command.index("--first-token-delay-ms") + 1])
    return "upstream-instant" if delay_ms == 0 else "upstream-paced"


def _children_cpu_s() -> float:
    """CPU of every child process reaped so far; only the load generator is reaped mid-run."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
