"""The `drill` fixture: each drill records what it expected and what it observed.

Results go to one JSON line per drill in `LLMMESH_DRILL_RESULTS` (default
`.drills/results.jsonl`), which `python -m tests.drills` turns into the table that
docs/reliability.md keeps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

RESULTS_PATH = pathlib.Path(os.environ.get("LLMMESH_DRILL_RESULTS", ".drills/results.jsonl"))


@dataclasses.dataclass
class DrillRecord:
    """What one drill expected and observed; `figures` carries its measurements."""

    name: str
    expected: str = ""
    observed: str = ""
    passed: bool | None = None
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)

    def record(self, *, expected: str, observed: str, passed: bool, **figures: Any) -> None:
        self.expected, self.observed, self.passed = expected, observed, passed
        self.figures.update(figures)


@pytest.fixture
def drill(request: pytest.FixtureRequest) -> Iterator[DrillRecord]:
    record = DrillRecord(name=request.node.name)
    started = time.monotonic()
    yield record
    if record.passed is None:
        return
    line = {**dataclasses.asdict(record), "duration_s": round(time.monotonic() - started, 2)}
    print(f"\n[drill] {record.name}: expected {record.expected}; observed {record.observed}")
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS_PATH.open("a") as results:
        results.write(json.dumps(line) + "\n")
