"""Values loaded from files that follow the files when they change, without a restart.

A rotated certificate or mesh token is picked up on the next use after its file changed
(modification time, size or inode, checked at most once per poll interval) or at once after
SIGHUP (`check_all_now`). A load that fails, as it can halfway through a rotation that
writes the certificate before its key, keeps the last good value and is tried again on the
next check; only the first load, at start, is fatal.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")

POLL_INTERVAL_S = 1.0

Signature = tuple[tuple[int, int, int], ...]

# Every live watch, so that SIGHUP can check them all at once.
_watches: weakref.WeakSet[WatchedFiles[Any]] = weakref.WeakSet()


def _signature(paths: Sequence[str]) -> Signature:
    stats = [os.stat(path) for path in paths]
    return tuple((stat.st_mtime_ns, stat.st_size, stat.st_ino) for stat in stats)


class WatchedFiles(Generic[T]):
    """The value `load()` makes of `paths`, re-made when one of the files changes.

    `generation` grows by one with every new value, so users that build something from the
    value (a channel, a TLS configuration) know when to build it again.
    """

    def __init__(
        self,
        paths: Sequence[str],
        load: Callable[[], T],
        *,
        what: str,
        poll_interval_s: float = POLL_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._paths = tuple(paths)
        self._load = load
        self._what = what
        self._poll_interval_s = poll_interval_s
        self._clock = clock
        # Raises at start: a service must not come up without its first value.
        self._signature = _signature(self._paths)
        self._value = load()
        self._next_check = clock() + poll_interval_s
        self._rejected: str | None = None
        self.generation = 1
        _watches.add(self)

    @property
    def value(self) -> T:
        """The current value, after a check for changed files if one is due."""
        if self._clock() >= self._next_check:
            self.check_now()
        return self._value

    def current_generation(self) -> int:
        """The generation of `value`, after a check for changed files if one is due."""
        if self._clock() >= self._next_check:
            self.check_now()
        return self.generation

    def check_now(self) -> None:
        self._next_check = self._clock() + self._poll_interval_s
        try:
            before = _signature(self._paths)
            if before == self._signature:
                return
            value = self._load()
            # Files that changed again while they were read are read again next time.
            if _signature(self._paths) != before:
                return
        except Exception as error:  # noqa: BLE001 - any failed load keeps the last good value
            self._defer(error)
            return
        self._signature = before
        self._rejected = None
        self._value = value
        self.generation += 1
        log.info("files_reloaded", what=self._what, generation=self.generation)

    def _defer(self, error: Exception) -> None:
        # Logged once per failure, not on every check while the files stay wrong.
        message = f"{type(error).__name__}: {error}"
        if message != self._rejected:
            self._rejected = message
            log.warning("files_reload_deferred", what=self._what, error=message)


def check_all_now() -> None:
    """Checks every watch at once (SIGHUP)."""
    for watch in list(_watches):
        watch.check_now()
