"""Runs the cache's CPU-heavy work (embedding, verification) off the event loop, fairly.

A few worker threads take jobs from per-tenant queues, always from the tenant served least
recently, so a tenant that sends many heavy lookups waits behind its own jobs, not in front
of everyone else's: another tenant's job waits at most for the jobs already running plus
one job of each other busy tenant.
Queues are bounded per tenant and in total; a job that does not fit is refused at once
(PoolBusyError, which the cache turns into a miss), and a job that waits past its timeout
is dropped. The event loop only does bookkeeping, so health checks and exact lookups never
wait for this work.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any, Generic, TypeVar

ResultT = TypeVar("ResultT")


class PoolBusyError(Exception):
    """The tenant's queue or the whole queue is full."""


@dataclasses.dataclass
class _Job(Generic[ResultT]):
    tenant: str
    call: Callable[[], ResultT]
    done: asyncio.Future[ResultT]


class FairCpuPool:
    """Worker threads fed round-robin from bounded per-tenant queues."""

    def __init__(self, workers: int, max_queued: int, max_queued_per_tenant: int) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="cache-cpu"
        )
        self._workers = workers
        self._max_queued = max_queued
        self._max_queued_per_tenant = max_queued_per_tenant
        self._queues: dict[str, collections.deque[_Job[Any]]] = {}
        # When each tenant with queued or running jobs was last given a worker.
        self._last_served: dict[str, int] = {}
        self._running_by_tenant: collections.Counter[str] = collections.Counter()
        self._dispatches = 0
        self._queued = 0
        self._running = 0

    @property
    def queued(self) -> int:
        return self._queued

    async def run(self, tenant: str, call: Callable[[], ResultT], *, timeout_s: float) -> ResultT:
        """The call's result, computed on a worker thread.

        Raises PoolBusyError when the queues are full and TimeoutError past timeout_s (the
        call itself, if already running, finishes on its thread; its input is bounded).
        """
        queue = self._queues.get(tenant)
        if self._queued >= self._max_queued or (
            queue is not None and len(queue) >= self._max_queued_per_tenant
        ):
            raise PoolBusyError(tenant)
        job: _Job[ResultT] = _Job(tenant, call, asyncio.get_running_loop().create_future())
        if queue is None:
            queue = self._queues[tenant] = collections.deque()
        queue.append(job)
        self._queued += 1
        self._dispatch()
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.shield(job.done)
        finally:
            # Not started yet: it will be skipped. Started: its result is discarded.
            job.done.cancel()

    def _dispatch(self) -> None:
        while self._running < self._workers and self._queues:
            # Linear in the tenants waiting, which the queue bound keeps small.
            tenant = min(self._queues, key=lambda name: self._last_served.get(name, -1))
            queue = self._queues[tenant]
            job = queue.popleft()
            self._queued -= 1
            if not queue:
                del self._queues[tenant]
            if job.done.done():
                self._forget_if_idle(tenant)
                continue
            self._running += 1
            self._running_by_tenant[tenant] += 1
            self._dispatches += 1
            self._last_served[tenant] = self._dispatches
            submitted = self._executor.submit(job.call)
            submitted.add_done_callback(self._report_to_loop(job))

    def _forget_if_idle(self, tenant: str) -> None:
        if tenant not in self._queues and not self._running_by_tenant[tenant]:
            del self._running_by_tenant[tenant]
            self._last_served.pop(tenant, None)

    def _report_to_loop(self, job: _Job[Any]) -> Callable[[concurrent.futures.Future[Any]], None]:
        loop = job.done.get_loop()

        def report(finished: concurrent.futures.Future[Any]) -> None:
            # Runs on the worker thread; the bookkeeping belongs to the loop's thread.
            with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
                loop.call_soon_threadsafe(self._finished, finished, job)

        return report

    def _finished(self, finished: concurrent.futures.Future[Any], job: _Job[Any]) -> None:
        self._running -= 1
        self._running_by_tenant[job.tenant] -= 1
        self._forget_if_idle(job.tenant)
        if not job.done.done():
            error = finished.exception()
            if error is not None:
                job.done.set_exception(error)
            else:
                job.done.set_result(finished.result())
        self._dispatch()

    def close(self) -> None:
        """Stops taking jobs; running ones finish on their threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)
