"""The benchmark harness runs end to end and reports what it measured (docs/benchmarks.md).

A short run of one scenario through the real services, Redis and fake upstream, with the
services from this environment so that no second one has to be built; it writes its report
to a file of its own rather than into the docs.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

from bench.mesh.report import TargetCheck, target_checks
from bench.mesh.scenarios import Results

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_a_short_run_measures_the_mesh_and_the_direct_path_and_writes_a_report(
    tmp_path: pathlib.Path,
) -> None:
    output = tmp_path / "report.md"
    output.write_text("before\n<!-- bench.mesh results: start -->\nold\n"
                      "<!-- bench.mesh results: end -->\nafter\n")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "bench.mesh", "--quick", "--scenario", "first-token-c1",
         "--no-hops", "--services-from", "current", "--duration-s", "1", "--warmup-s", "0.3",
         "--output", str(output), "--log", str(tmp_path / "services.log")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    report = output.read_text()
    assert report.startswith("before\n")
    assert report.endswith("after\n")
    assert "old" not in report
    rows = {
        match["path"]: float(match["rate"])
        for match in re.finditer(
            r"^\| first-token-c1 \| (?P<path>[^|]+?) \| 1 \| (?P<rate>[\d.]+) \| 0 \|", report, re.M
        )
    }
    assert set(rows) == {"direct (raw httpx SSE to the fake)", "mesh (router-stream)"}, report
    assert all(rate > 0 for rate in rows.values()), rows
    assert re.search(r"\| idle, after start \|( [\d.]+ \|){4}", report), report


def test_idle_memory_is_checked_in_megabytes_after_start_and_after_the_load() -> None:
    def rss_checks(after_start_mib: float, after_load_mib: float) -> list[TargetCheck]:
        results = Results(
            idle_rss_mib={"router": 50.0, "provider": after_start_mib},
            rss_after_load_mib={"router": 51.0, "provider": after_load_mib},
        )
        return [c for c in target_checks(results) if c.target.startswith("idle RSS")]

    # 76.0 MiB is 79.7 MB; 76.5 MiB is 80.2 MB.
    assert [check.met for check in rss_checks(76.0, 76.0)] == [True, True]
    assert [check.met for check in rss_checks(76.0, 76.5)] == [True, False]
    assert "provider" in rss_checks(76.5, 76.5)[1].measured


def test_the_transport_comparison_measures_plain_text_and_mtls_side_by_side(
    tmp_path: pathlib.Path,
) -> None:
    output = tmp_path / "report.md"
    output.write_text("# Benchmarks\n")
    done = subprocess.run(
        # Long enough that a busy machine still completes a request in every window.
        [sys.executable, "-m", "bench.mesh.transport", "--rounds", "1", "--duration-s", "1.5",
         "--warmup-s", "0.5", "--connections", "10", "--output", str(output),
         "--log", str(tmp_path / "services.log")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = output.read_text()
    assert "## TLS between services" in report
    assert "errors in all runs: 0" in report
    rows = re.findall(r"^\| (.+?) \| ([\d.]+) \| ([\d.]+) \| ([+-][\d.]+) \|$", report, re.M)
    labels = {label for label, *_ in rows}
    assert len(rows) == 10, report
    assert "new connection to a peer + first call, p50 (ms)" in labels
    assert "streamed throughput, c=64 (req/s)" in labels
    assert all(float(plain) > 0 and float(tls) > 0 for _, plain, tls, _ in rows), report
