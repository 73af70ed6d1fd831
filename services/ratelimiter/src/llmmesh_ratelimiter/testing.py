"""What the ratelimiter's state in Redis still holds, for tests and drills that count leaks."""

from __future__ import annotations

import redis

from llmmesh_ratelimiter.keys import KEY_PREFIX


def held_leases(redis_url: str) -> int:
    """Concurrency leases held in Redis: after every request ended, each one is a leak."""
    client = redis.Redis.from_url(redis_url)
    try:
        leases = client.scan_iter(f"{KEY_PREFIX}:*:concurrency:*")
        return sum(int(client.zcard(key)) for key in leases)
    finally:
        client.close()


def reservation_states(redis_url: str) -> dict[str, int]:
    """Reservation records by state: a `held` one never got its settlement (or release)."""
    client = redis.Redis.from_url(redis_url)
    counts = {"held": 0, "done": 0}
    try:
        for key in client.scan_iter(f"{KEY_PREFIX}:*:reservation:*"):
            if b":abandoned:" in key:
                continue
            record = client.get(key) or b""
            counts["held" if b'"s":"held"' in record else "done"] += 1
    finally:
        client.close()
    return counts
