"""The results as markdown: targets met or not, scenario tables, resources, per-hop breakdown."""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import platform
import re

import grpc

from bench.mesh.resources import ProcessUsage
from bench.mesh.scenarios import Measured, Results, ScenarioOutcome
from bench.mesh.stats import Distribution

RESULTS_START = "<!-- bench.mesh results: start -->"
RESULTS_END = "<!-- bench.mesh results: end -->"
SERVICES = ("router", "ratelimiter", "cache", "provider")
# The target is in MB (10^6 bytes); resident memory is reported in MiB, as ps and top do.
IDLE_RSS_LIMIT_MB = 80.0
MB_PER_MIB = 1.048576


@dataclasses.dataclass(frozen=True)
class TargetCheck:
    target: str
    goal: str
    measured: str
    met: bool


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def _added(mesh: Distribution, direct: Distribution) -> tuple[float, float]:
    return mesh.p50_ms - direct.p50_ms, mesh.p99_ms - direct.p99_ms


def _outcome(results: Results, name: str) -> ScenarioOutcome | None:
    return next((o for o in results.scenarios if o.scenario.name == name), None)


def target_checks(results: Results) -> list[TargetCheck]:
    checks: list[TargetCheck] = []
    first = _outcome(results, "first-token-c1")
    if first is not None and first.direct is not None:
        p50, p99 = _added(first.mesh.result.first_token, first.direct.result.first_token)
        checks.append(
            TargetCheck(
                "added first-token latency, c=1", "p50 ≤ 2 ms, p99 ≤ 5 ms",
                f"p50 +{_ms(p50)} ms, p99 +{_ms(p99)} ms", p50 <= 2 and p99 <= 5,
            )
        )  # fmt: skip
    hit = _outcome(results, "cache-hit-c1")
    if hit is not None:
        p50 = hit.mesh.result.total.p50_ms
        checks.append(
            TargetCheck("cache hit end to end", "p50 ≤ 1.5 ms", f"p50 {_ms(p50)} ms", p50 <= 1.5)
        )
    saturation = _outcome(results, "saturation-c64")
    if saturation is not None:
        run = saturation.mesh.result
        checks.append(
            TargetCheck(
                "streamed throughput, c=64, instant upstream, 16 chunks",
                "≥ 450 req/s, no errors",
                f"{run.requests_per_s:.0f} req/s, {run.errors} errors",
                run.requests_per_s >= 450 and run.errors == 0,
            )
        )
    relay = _outcome(results, "paced-c64")
    if relay is not None and relay.direct is not None:
        _, p99 = _added(relay.mesh.result.inter_token, relay.direct.result.inter_token)
        checks.append(
            TargetCheck(
                "added inter-token latency, 64 streams (paced upstream)", "p99 ≤ 2 ms",
                f"p99 +{_ms(p99)} ms", p99 <= 2,
            )
        )  # fmt: skip
    paced = _outcome(results, "paced-c16")
    if paced is not None and paced.direct is not None:
        share = paced.mesh.result.requests_per_s / max(paced.direct.result.requests_per_s, 1e-9)
        _, p99 = _added(paced.mesh.result.first_token, paced.direct.result.first_token)
        checks.append(
            TargetCheck(
                "paced upstream, c=16: throughput vs direct; added first token",
                "≥ 98 %; p99 ≤ 5 ms", f"{100 * share:.1f} %; p99 +{_ms(p99)} ms",
                share >= 0.98 and p99 <= 5,
            )
        )  # fmt: skip
    for when, measured in (
        ("after start", results.idle_rss_mib),
        ("after the load", results.rss_after_load_mib),
    ):
        if measured:
            checks.append(_idle_memory_check(when, measured))
    return checks


def _idle_memory_check(when: str, rss_mib: dict[str, float]) -> TargetCheck:
    """The largest service against the target; idle right after start, and idle again after
    serving (pools, caches and modules loaded on first use stay)."""
    largest = max(rss_mib, key=rss_mib.__getitem__)
    worst_mb = rss_mib[largest] * MB_PER_MIB
    return TargetCheck(
        f"idle RSS per service, {when}", f"< {IDLE_RSS_LIMIT_MB:g} MB each",
        f"largest {worst_mb:.1f} MB ({largest}, {rss_mib[largest]:.1f} MiB)",
        worst_mb < IDLE_RSS_LIMIT_MB,
    )  # fmt: skip


def _target_table(results: Results) -> list[str]:
    lines = ["| target | goal | measured | met |", "|---|---|---|---|"]
    for check in target_checks(results):
        lines.append(
            f"| {check.target} | {check.goal} | {check.measured} | "
            f"{'yes' if check.met else '**no**'} |"
        )
    return lines


def _run_row(label: str, path: str, measured: Measured) -> str:
    run = measured.result
    load_cpu = 100 * run.load_generator_cpu_s / run.duration_s if run.duration_s else 0.0
    return (
        f"| {label} | {path} | {run.concurrency} | {run.requests_per_s:.1f} | {run.errors} | "
        f"{_ms(run.first_token.p50_ms)} / {_ms(run.first_token.p99_ms)} | "
        f"{_ms(run.total.p50_ms)} / {_ms(run.total.p99_ms)} | "
        f"{_ms(run.inter_token.p50_ms)} / {_ms(run.inter_token.p99_ms)} | "
        f"{run.deltas_per_request:.1f} | {load_cpu:.0f} | {measured.outside_percent:.0f} |"
    )


def _runs_table(results: Results, direct_label: str) -> list[str]:
    lines = [
        "| scenario | path | conc. | req/s | errors | first token p50 / p99 ms | "
        "whole answer p50 / p99 ms | inter-token p50 / p99 ms | deltas/req | "
        "load generator CPU % (window) | "
        "CPU outside the benchmark % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for outcome in results.scenarios:
        if outcome.direct is not None:
            lines.append(_run_row(outcome.scenario.name, direct_label, outcome.direct))
        lines.append(
            _run_row(outcome.scenario.name, f"mesh ({outcome.scenario.mesh_target})", outcome.mesh)
        )
    return lines


def _added_table(results: Results) -> list[str]:
    lines = [
        "| scenario | added first token p50 / p99 ms | added whole answer p50 / p99 ms | "
        "added inter-token p99 ms | mesh / direct throughput |",
        "|---|---|---|---|---|",
    ]
    for outcome in results.scenarios:
        if outcome.direct is None:
            continue
        mesh, direct = outcome.mesh.result, outcome.direct.result
        first = _added(mesh.first_token, direct.first_token)
        total = _added(mesh.total, direct.total)
        _, gap = _added(mesh.inter_token, direct.inter_token)
        share = mesh.requests_per_s / max(direct.requests_per_s, 1e-9)
        lines.append(
            f"| {outcome.scenario.name} | {_ms(first[0])} / {_ms(first[1])} | "
            f"{_ms(total[0])} / {_ms(total[1])} | {_ms(gap)} | {100 * share:.1f} % |"
        )
    return lines


def _usage_cell(usage: ProcessUsage | None, requests_per_s: float) -> str:
    if usage is None:
        return ""
    # CPU per request holds up better than latency when something else loads the machine.
    per_request_ms = 10 * usage.cpu_percent / requests_per_s if requests_per_s else math.nan
    return f"{usage.cpu_percent:.0f} % / {_ms(per_request_ms)} / {usage.peak_rss_mib:.0f}"


def _resources_table(results: Results) -> list[str]:
    names = [*SERVICES, "redis"]
    lines = [
        "| scenario (mesh run) | " + " | ".join(names)
        + " | upstream | load generator CPU % | machine busy % | outside the benchmark % |",
        "|---|" + "---|" * (len(names) + 4),
    ]  # fmt: skip
    for outcome in results.scenarios:
        measured = outcome.mesh
        rate = measured.result.requests_per_s
        upstream = measured.usage.get(f"upstream-{outcome.scenario.pacing}")
        lines.append(
            f"| {outcome.scenario.name} | "
            + " | ".join(_usage_cell(measured.usage.get(name), rate) for name in names)
            + f" | {_usage_cell(upstream, rate)} | {measured.load_generator_percent:.0f} | "
            f"{measured.machine_busy_percent:.0f} | {measured.outside_percent:.0f} |"
        )
    return lines


def _memory_table(results: Results) -> list[str]:
    lines = ["| | " + " | ".join(SERVICES) + " |", "|---|" + "---|" * len(SERVICES)]
    for label, values in (
        ("idle, after start", results.idle_rss_mib),
        ("idle, after every scenario", results.rss_after_load_mib),
    ):
        if values:
            lines.append(f"| {label} | " + " | ".join(f"{values[s]:.1f}" for s in SERVICES) + " |")
    return lines


def _hops_table(results: Results) -> list[str]:
    first = _outcome(results, "first-token-c1")
    lines = [
        "| hop (called on its own, c=1) | p50 ms | p99 ms |",
        "|---|---|---|",
    ]
    rows: list[tuple[str, Distribution]] = []
    if first is not None and first.direct is not None:
        rows.append(("upstream, direct: first token", first.direct.result.first_token))
        rows.append(("upstream, direct: whole answer", first.direct.result.total))
    labels = {
        "ratelimiter": ("ratelimiter Reserve", "first_token"),
        "cache-lookup": ("cache Lookup (miss)", "total"),
        "provider": ("provider Generate: first token", "first_token"),
    }
    for target, (label, field) in labels.items():
        measured = results.hops.get(target)
        if measured is not None:
            rows.append((label, getattr(measured.result, field)))
            if target == "ratelimiter":
                rows.append(("ratelimiter Reserve + Settle", measured.result.total))
            if target == "provider":
                rows.append(("provider Generate: whole answer", measured.result.total))
    if first is not None:
        rows.append(("router StreamComplete: first token", first.mesh.result.first_token))
        rows.append(("router StreamComplete: whole answer", first.mesh.result.total))
    for label, distribution in rows:
        lines.append(f"| {label} | {_ms(distribution.p50_ms)} | {_ms(distribution.p99_ms)} |")
    return lines


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        if found:
            cpu = found.group(1).strip()
    return (
        f"{cpu}, {os.cpu_count()} cores; Linux {platform.release()}; "
        f"Python {platform.python_version()}; grpcio {grpc.__version__}"
    )


def render(results: Results, *, command: str, settings: str, direct_label: str) -> str:
    sections = [
        RESULTS_START,
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine_description()}",
        "",
        f"Settings: {settings}",
        "",
        "### Targets",
        "",
        *_target_table(results),
        "",
        "### Every run",
        "",
        *_runs_table(results, direct_label),
        "",
        "### What the mesh adds (mesh minus direct, same run)",
        "",
        *_added_table(results),
        "",
        "### Per process during each mesh run: CPU (% of one core) / CPU ms per request / "
        "peak RSS (MiB)",
        "",
        *_resources_table(results),
        "",
        "### Resident memory per service (MiB)",
        "",
        *_memory_table(results),
        "",
        "### Per-hop breakdown",
        "",
        *_hops_table(results),
        "",
        RESULTS_END,
    ]
    return "\n".join(sections) + "\n"


def write_into(
    document: pathlib.Path,
    rendered: str,
    *,
    start: str = RESULTS_START,
    end: str = RESULTS_END,
    heading: str = "",
) -> None:
    """Replaces the block between `start` and `end` in `document`, or appends `rendered`
    (under `heading`, when given) when it has none."""
    text = document.read_text() if document.exists() else "# Benchmarks\n\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: rendered, text)
    else:
        text = text.rstrip("\n") + "\n\n" + (f"{heading}\n\n" if heading else "") + rendered
    document.write_text(text)
