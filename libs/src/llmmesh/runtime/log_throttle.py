"""At most one log line per key and interval, so a caller cannot fill the log by repeating.

The next line let through says how many were held back since the last one. Memory is
bounded: past `max_keys` keys, expired ones go first, then the oldest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

DEFAULT_INTERVAL_S = 60.0
DEFAULT_MAX_KEYS = 4096


class LogThrottle:
    def __init__(
        self,
        interval_s: float = DEFAULT_INTERVAL_S,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval_s = interval_s
        self._max_keys = max_keys
        self._clock = clock
        # key -> [when the next line may go out, lines held back since the last one]
        self._entries: dict[Hashable, list[float]] = {}

    def admit(self, key: Hashable) -> int | None:
        """None: stay quiet. A number: log now, mentioning that many held-back lines."""
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and now < entry[0]:
            entry[1] += 1
            return None
        held_back = int(entry[1]) if entry is not None else 0
        if entry is None and len(self._entries) >= self._max_keys:
            self._make_room(now)
        self._entries.pop(key, None)
        self._entries[key] = [now + self._interval_s, 0]
        return held_back

    def _make_room(self, now: float) -> None:
        for key in [key for key, entry in self._entries.items() if entry[0] <= now]:
            del self._entries[key]
        while len(self._entries) >= self._max_keys:
            del self._entries[next(iter(self._entries))]
