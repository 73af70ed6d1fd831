"""Fixtures the cross-service tests share: a real OTLP collector and a log file per module."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from llmmesh.testing.otlp_collector import OtlpCollector


@pytest.fixture(scope="module")
def collector() -> Iterator[OtlpCollector]:
    """A collector the module's mesh exports to (`collector.exporter_env()`)."""
    with OtlpCollector() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Where the module's service processes write their log lines."""
    return tmp_path_factory.mktemp("mesh") / "services.log"
