"""The storage contract every limiter backend (Redis, in-memory) fulfils."""

from __future__ import annotations

from typing import Protocol

import redis

from llmmesh_ratelimiter.limits import ReservationPlan, ReserveOutcome, SettleOutcome

# What a backend raises when its store cannot answer: refused, reset or silent connections,
# an open circuit, and Redis-level errors (a cluster that lost a slot, a server loading).
STORE_ERRORS = (OSError, redis.RedisError)


class StoreCircuitOpenError(redis.ConnectionError):
    """The store did not answer lately, so this call was not sent: nothing reached it."""


class LimiterBackend(Protocol):
    """Decides, settles and releases reservations atomically against shared limit state."""

    async def reserve(self, plan: ReservationPlan) -> ReserveOutcome:
        """Checks every limit of the plan; takes each cost only if no enforced limit lacks room.

        Reserving an id that already holds a reservation takes nothing and replays ALLOW.
        """
        ...

    async def settle(self, reservation_id: str, actual_tokens: int) -> SettleOutcome:
        """Refunds or charges the token limits by the gap to the estimate; frees the lease.

        Settling a settled reservation changes nothing and answers as the first settle did
        (`replayed`), so a caller may repeat it after losing the answer.
        """
        ...

    async def release(self, reservation_id: str) -> bool:
        """Gives back everything the reservation took; True again for a repeat; False when it
        is unknown, expired or was settled."""
        ...

    async def abandon(self, plan: ReservationPlan) -> None:
        """Undoes one attempt whose answer nobody will read (its caller gave up): gives back
        what it took, or makes sure it takes nothing should it still arrive. Idempotent."""
        ...

    async def ping(self) -> bool:
        """True while the store answers."""
        ...

    async def close(self) -> None:
        """Releases connections."""
        ...
