"""Upstream API keys read from files (a mounted Secret), and swapped in when they change.

A file holds one key; surrounding whitespace (the newline `echo` adds) is ignored. Errors
name the file and the policy field that points at it, never what the file holds.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from typing import Protocol

import structlog

from llmmesh.policy import PolicyError

logger = structlog.get_logger(__name__)

# A key is tens to a few hundred bytes; a larger file is a wrong path, not a key, and is not
# read further.
MAX_KEY_FILE_BYTES = 16 * 1024


class KeyedBackend(Protocol):
    """A backend whose upstream key can be replaced while it serves."""

    def use_api_key(self, api_key: str) -> None: ...


@dataclasses.dataclass(frozen=True)
class KeyFile:
    """The file an instance's key comes from, and the policy field that names it."""

    path: str
    field: str

    def read(self) -> str:
        """The key; raises PolicyError naming the file and the field when there is none."""
        try:
            key = _read_key(self.path)
        except (OSError, ValueError) as error:
            reason = error.strerror if isinstance(error, OSError) else str(error)
            raise PolicyError(f"invalid policy: {self.field}: {self.path}: {reason}") from None
        return key


def _read_key(path: str) -> str:
    # open() on a FIFO or a device would block or never end; only regular files hold keys.
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError("not a regular file")
    with open(path, "rb") as file:
        data = file.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise ValueError(f"larger than {MAX_KEY_FILE_BYTES} bytes; it must hold only the key")
    try:
        key = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError("not ASCII text; it must hold only the key") from None
    if not key:
        raise ValueError("empty")
    if not key.isprintable() or any(char.isspace() for char in key):
        raise ValueError("holds more than one key (whitespace or control characters inside)")
    return key


@dataclasses.dataclass
class _RotatingKey:
    instance: str
    source: KeyFile
    backend: KeyedBackend
    current: str


class KeyFileWatch:
    """Every instance keyed from a file: re-reads them all, and swaps in the keys that changed."""

    def __init__(self) -> None:
        self._keys: list[_RotatingKey] = []

    def add(self, instance: str, source: KeyFile, backend: KeyedBackend, current: str) -> None:
        self._keys.append(_RotatingKey(instance, source, backend, current))

    def reload(self) -> None:
        """All or nothing: when one file cannot be read, PolicyError and no key changes."""
        fresh = [(entry, entry.source.read()) for entry in self._keys]
        for entry, key in fresh:
            if key == entry.current:
                continue
            entry.backend.use_api_key(key)
            entry.current = key
            logger.info(
                "upstream_api_key_replaced", instance=entry.instance, path=entry.source.path
            )
