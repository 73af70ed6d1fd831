"""CPU time and peak RSS of each benchmarked process, sampled while a run goes on."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator, Mapping

import psutil

SAMPLE_INTERVAL_S = 0.1
MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ProcessUsage:
    """One process over one run: CPU as a share of one core, and its largest RSS."""

    cpu_percent: float
    peak_rss_mib: float


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def rss_mib(processes: Mapping[str, psutil.Process]) -> dict[str, float]:
    """Resident memory of each process right now."""
    return {name: process.memory_info().rss / MIB for name, process in processes.items()}


def _machine_busy_s() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


class UsageMeter:
    """Measures the processes from entering `measuring()` to leaving it.

    It also measures the whole machine, so that CPU used by anything outside the benchmark
    (which would distort its figures) shows in the report.
    """

    def __init__(self, processes: Mapping[str, psutil.Process]) -> None:
        self._processes = dict(processes)
        self.usage: dict[str, ProcessUsage] = {}
        # Busy CPU of the whole machine, as a share of one core (200 % = both cores).
        self.machine_busy_percent = 0.0
        self.wall_s = 0.0

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        peaks = rss_mib(self._processes)
        stop = threading.Event()

        def sample_rss() -> None:
            # A thread, not the event loop: the orchestrator only waits on the load process.
            while not stop.wait(SAMPLE_INTERVAL_S):
                for name, rss in rss_mib(self._processes).items():
                    peaks[name] = max(peaks[name], rss)

        cpu_before = {name: _cpu_s(p) for name, p in self._processes.items()}
        machine_before = _machine_busy_s()
        started = time.monotonic()
        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        try:
            yield
        finally:
            stop.set()
            sampler.join()
            wall_s = self.wall_s = time.monotonic() - started
            self.machine_busy_percent = 100 * (_machine_busy_s() - machine_before) / wall_s
            self.usage = {
                name: ProcessUsage(
                    cpu_percent=100 * (_cpu_s(process) - cpu_before[name]) / wall_s,
                    peak_rss_mib=peaks[name],
                )
                for name, process in self._processes.items()
            }
