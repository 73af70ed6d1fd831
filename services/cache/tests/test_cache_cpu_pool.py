"""The worker pool takes tenants' jobs in turn, refuses what does not fit, drops the late."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from llmmesh_cache.cpu_pool import FairCpuPool, PoolBusyError


def blocked_until(gate: threading.Event, label: str, log: list[str]) -> str:
    gate.wait(10)
    log.append(label)
    return label


async def test_a_busy_tenant_waits_behind_its_own_jobs_not_in_front_of_others() -> None:
    pool = FairCpuPool(workers=1, max_queued=64, max_queued_per_tenant=16)
    gate = threading.Event()
    order: list[str] = []
    try:
        heavy = [
            asyncio.ensure_future(
                pool.run(
                    "heavy", lambda n=n: blocked_until(gate, f"heavy-{n}", order), timeout_s=10
                )
            )
            for n in range(5)
        ]
        await asyncio.sleep(0.05)  # heavy-0 holds the only worker; four more wait
        light = asyncio.ensure_future(
            pool.run("light", lambda: blocked_until(gate, "light", order), timeout_s=10)
        )
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(*heavy, light)
    finally:
        pool.close()
    # The light tenant's only job runs right after the one already running.
    assert order[:2] == ["heavy-0", "light"]
    assert order[2:] == [f"heavy-{n}" for n in range(1, 5)]


async def test_full_queues_refuse_at_once() -> None:
    pool = FairCpuPool(workers=1, max_queued=3, max_queued_per_tenant=2)
    gate = threading.Event()
    try:
        running = asyncio.ensure_future(pool.run("a", gate.wait, timeout_s=10))
        await asyncio.sleep(0.05)
        waiting = [asyncio.ensure_future(pool.run("a", gate.wait, timeout_s=10)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(PoolBusyError):
            await pool.run("a", gate.wait, timeout_s=10)  # the tenant's share is used
        other = asyncio.ensure_future(pool.run("b", gate.wait, timeout_s=10))
        await asyncio.sleep(0)
        with pytest.raises(PoolBusyError):
            await pool.run("c", gate.wait, timeout_s=10)  # the whole queue is full
        gate.set()
        await asyncio.gather(running, *waiting, other)
    finally:
        pool.close()


async def test_a_job_that_waits_past_its_timeout_is_dropped_and_never_runs() -> None:
    pool = FairCpuPool(workers=1, max_queued=8, max_queued_per_tenant=8)
    gate = threading.Event()
    ran: list[str] = []
    try:
        running = asyncio.ensure_future(pool.run("a", gate.wait, timeout_s=10))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await pool.run("b", lambda: ran.append("late"), timeout_s=0.1)
        assert time.monotonic() - started < 2.0
        gate.set()
        await running
        assert await pool.run("b", lambda: "next", timeout_s=5) == "next"
    finally:
        pool.close()
    assert ran == []
    assert pool.queued == 0


async def test_an_exception_in_a_job_reaches_its_caller() -> None:
    pool = FairCpuPool(workers=2, max_queued=8, max_queued_per_tenant=8)

    def broken() -> None:
        raise ValueError("boom")

    try:
        with pytest.raises(ValueError, match="boom"):
            await pool.run("a", broken, timeout_s=5)
    finally:
        pool.close()
