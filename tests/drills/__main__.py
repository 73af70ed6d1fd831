"""`python -m tests.drills [pytest args]`: runs every drill and prints expected vs observed."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.drills.conftest import RESULTS_PATH


def main() -> int:
    RESULTS_PATH.unlink(missing_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    code = pytest.main(["-q", "-p", "no:cacheprovider", "tests/drills", *sys.argv[1:]])
    if RESULTS_PATH.exists():
        print("\n| drill | expected | observed | passed | figures |")
        print("|---|---|---|---|---|")
        for line in RESULTS_PATH.read_text().splitlines():
            row = json.loads(line)
            figures = ", ".join(f"{k}={v}" for k, v in row["figures"].items())
            print(
                f"| {row['name']} | {row['expected']} | {row['observed']} | "
                f"{'yes' if row['passed'] else 'NO'} | {figures} |"
            )
    return int(code)


if __name__ == "__main__":
    raise SystemExit(main())
