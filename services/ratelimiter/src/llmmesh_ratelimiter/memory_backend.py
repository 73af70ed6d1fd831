"""Limiter state in this process: the embedded default when no Redis URL is configured.

It follows the Redis scripts rule for rule (token buckets that refill continuously, leases
that expire, all-or-nothing decisions, idempotent reservations, settle and release), and it
is exact for one replica because each operation runs without an await in the middle.
Several replicas each keep their own state, so use Redis as soon as there is more than one.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import time
from collections.abc import Callable

from llmmesh_ratelimiter.limits import (
    NOT_FOUND,
    LimitCheck,
    LimitKind,
    LimitState,
    ReservationPlan,
    ReserveOutcome,
    SettleOutcome,
)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclasses.dataclass
class _Bucket:
    level: float
    ts_ms: int


@dataclasses.dataclass(frozen=True)
class _Taken:
    key: str
    kind: LimitKind
    capacity: int
    window_ms: int
    amount: int


@dataclasses.dataclass
class _Record:
    taken: tuple[_Taken, ...]
    estimated_tokens: int
    expires_ms: int
    attempt: str
    held: bool = True
    # How it was finished ("settle" or "release") and the tokens it settled, for repeats.
    finished_by: str = ""
    settled_tokens: int = 0


def _ms_to_refill(missing: float, capacity: int, window_ms: int) -> int:
    return 0 if missing <= 0 else math.ceil(missing * window_ms / capacity)


class MemoryBackend:
    """The LimiterBackend kept in dictionaries; `clock_ms` is injectable for tests."""

    def __init__(self, clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self._clock_ms = clock_ms
        self._buckets: dict[str, _Bucket] = {}
        self._leases: dict[str, dict[str, int]] = {}
        self._records: dict[str, _Record] = {}
        # (expiry, reservation id) in expiry order, so purging is not a scan of every record.
        self._record_expiries: list[tuple[int, str]] = []

    async def reserve(self, plan: ReservationPlan) -> ReserveOutcome:
        now_ms = self._clock_ms()
        self._forget_expired_records(now_ms)
        replayed = plan.reservation_id in self._records
        levels: list[float] = []
        rooms: list[bool] = []
        for check in plan.checks:
            cost = 0 if replayed else check.cost
            level = self._level(check, now_ms)
            levels.append(level)
            rooms.append(level + cost <= check.capacity if _is_lease(check) else level >= cost)
        denied = any(
            not room and not check.shadow for check, room in zip(plan.checks, rooms, strict=True)
        )
        if not denied and not replayed:
            taken = []
            for index, check in enumerate(plan.checks):
                # A shadow limit without room takes nothing: it counts what enforcing it
                # would admit.
                if rooms[index]:
                    levels[index] = self._take(check, plan, now_ms)
                    taken.append(
                        _Taken(check.key, check.kind, check.capacity, check.window_ms, check.cost)
                    )
            expires_ms = now_ms + plan.lease_ttl_ms
            self._records[plan.reservation_id] = _Record(
                tuple(taken), plan.estimated_tokens, expires_ms, plan.attempt
            )
            heapq.heappush(self._record_expiries, (expires_ms, plan.reservation_id))
        states = tuple(
            self._state(check, level, room, now_ms)
            for check, level, room in zip(plan.checks, levels, rooms, strict=True)
        )
        return ReserveOutcome(allowed=replayed or not denied, states=states, replayed=replayed)

    async def settle(self, reservation_id: str, actual_tokens: int) -> SettleOutcome:
        record, repeated = self._finish(reservation_id, "settle", actual_tokens)
        if record is None:
            return NOT_FOUND
        return SettleOutcome(
            found=True,
            refunded_tokens=max(record.estimated_tokens - record.settled_tokens, 0),
            charged_tokens=max(record.settled_tokens - record.estimated_tokens, 0),
            replayed=repeated,
        )

    async def release(self, reservation_id: str) -> bool:
        record, _ = self._finish(reservation_id, "release", 0)
        return record is not None

    async def abandon(self, plan: ReservationPlan) -> None:
        # Each operation here runs without an await inside, so an abandoned reservation
        # either took effect before it was given up or never will: only the first needs undoing.
        record = self._records.get(plan.reservation_id)
        if record is not None and record.held and record.attempt == plan.attempt:
            self._finish(plan.reservation_id, "release", 0)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None

    def _finish(
        self, reservation_id: str, mode: str, actual_tokens: int
    ) -> tuple[_Record | None, bool]:
        """The finished record (None when unknown, expired or finished the other way) and
        whether this was a repeat that changed nothing."""
        now_ms = self._clock_ms()
        self._forget_expired_records(now_ms)
        record = self._records.get(reservation_id)
        if record is None:
            return None, False
        if not record.held:
            return (record, True) if record.finished_by == mode else (None, False)
        release = mode == "release"
        used = 0 if release else actual_tokens
        for taken in record.taken:
            if taken.kind is LimitKind.CONCURRENCY:
                self._leases.get(taken.key, {}).pop(reservation_id, None)
            elif taken.kind is LimitKind.TOKENS:
                self._adjust_bucket(taken, taken.amount - used, now_ms)
            elif release:
                self._adjust_bucket(taken, taken.amount, now_ms)
        # Kept until its lease would have ended, so a repeated Reserve still replays and a
        # repeated settle or release answers as the first did.
        record.held = False
        record.finished_by = mode
        record.settled_tokens = used
        return record, False

    def _level(self, check: LimitCheck, now_ms: int) -> float:
        if _is_lease(check):
            leases = self._leases.setdefault(check.key, {})
            for member in [m for m, expiry_ms in leases.items() if expiry_ms <= now_ms]:
                del leases[member]
            return len(leases)
        return self._bucket_level(check.key, check.capacity, check.window_ms, now_ms)

    def _bucket_level(self, key: str, capacity: int, window_ms: int, now_ms: int) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return float(capacity)
        elapsed_ms = max(0, now_ms - bucket.ts_ms)
        return min(float(capacity), bucket.level + elapsed_ms * capacity / window_ms)

    def _take(self, check: LimitCheck, plan: ReservationPlan, now_ms: int) -> float:
        if _is_lease(check):
            leases = self._leases.setdefault(check.key, {})
            leases[plan.reservation_id] = now_ms + plan.lease_ttl_ms
            return len(leases)
        level = self._bucket_level(check.key, check.capacity, check.window_ms, now_ms) - check.cost
        self._buckets[check.key] = _Bucket(level, now_ms)
        return level

    def _adjust_bucket(self, taken: _Taken, delta: int, now_ms: int) -> None:
        level = self._bucket_level(taken.key, taken.capacity, taken.window_ms, now_ms)
        self._buckets[taken.key] = _Bucket(min(float(taken.capacity), level + delta), now_ms)

    def _state(self, check: LimitCheck, level: float, room: bool, now_ms: int) -> LimitState:
        if _is_lease(check):
            expiries = self._leases.get(check.key, {}).values()
            reset_after_ms = max(0, min(expiries) - now_ms) if expiries else 0
            return LimitState(
                remaining=check.capacity - int(level),
                reset_after_ms=reset_after_ms,
                exceeded=not room,
                retry_after_ms=0 if room else reset_after_ms,
            )
        reset_after_ms = _ms_to_refill(check.capacity - level, check.capacity, check.window_ms)
        if room:
            retry_after_ms = 0
        elif check.cost > check.capacity:
            retry_after_ms = reset_after_ms
        else:
            retry_after_ms = _ms_to_refill(check.cost - level, check.capacity, check.window_ms)
        return LimitState(
            remaining=max(0, math.floor(level)),
            reset_after_ms=reset_after_ms,
            exceeded=not room,
            retry_after_ms=retry_after_ms,
        )

    def _forget_expired_records(self, now_ms: int) -> None:
        while self._record_expiries and self._record_expiries[0][0] <= now_ms:
            _, reservation_id = heapq.heappop(self._record_expiries)
            self._records.pop(reservation_id, None)


def _is_lease(check: LimitCheck) -> bool:
    return check.kind is LimitKind.CONCURRENCY
