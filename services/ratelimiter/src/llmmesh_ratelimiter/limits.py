"""The vocabulary of a decision: what is checked, against which key, and what came of it."""

from __future__ import annotations

import dataclasses
import enum


class LimitKind(enum.StrEnum):
    """What a limit counts."""

    REQUESTS = "requests"
    TOKENS = "tokens"
    CONCURRENCY = "concurrency"


class LimitScope(enum.StrEnum):
    """Whose traffic a limit counts."""

    TENANT = "tenant"
    TENANT_MODEL = "tenant_model"
    MODEL = "model"


@dataclasses.dataclass(frozen=True)
class LimitCheck:
    """One limit applied to one request: its capacity, its storage key and what it would take.

    Requests and tokens limits are token buckets holding `capacity` that refill continuously
    at `capacity / window_ms`; a concurrency limit is a set of leases holding at most
    `capacity` members (its `window_ms` is 0).
    """

    name: str
    kind: LimitKind
    scope: LimitScope
    capacity: int
    window_ms: int
    shadow: bool
    key: str
    cost: int


@dataclasses.dataclass(frozen=True)
class ReservationPlan:
    """Everything a backend needs to decide on one request in a single atomic step."""

    reservation_id: str
    checks: tuple[LimitCheck, ...]
    estimated_tokens: int
    lease_ttl_ms: int
    # Names this one try at the decision (a repeated Reserve of one request is another try),
    # so a try that was given up can be undone without touching any other.
    attempt: str = ""


@dataclasses.dataclass(frozen=True)
class LimitState:
    """The state of one limit after a decision, in the order of the plan's checks."""

    remaining: int
    reset_after_ms: int
    exceeded: bool
    # How long until this limit has room for the same request again; 0 when it has room.
    retry_after_ms: int


@dataclasses.dataclass(frozen=True)
class ReserveOutcome:
    """The verdict of a backend: allowed (capacity taken) or denied (nothing taken)."""

    allowed: bool
    states: tuple[LimitState, ...]
    # True when the reservation already existed (same request id) and nothing new was taken.
    replayed: bool = False


@dataclasses.dataclass(frozen=True)
class SettleOutcome:
    """How a settle corrected a reservation's token estimate."""

    found: bool
    refunded_tokens: int = 0
    charged_tokens: int = 0
    # True when this repeats a settle that already happened: nothing changed this time.
    replayed: bool = False


NOT_FOUND = SettleOutcome(found=False)
