"""The services' own environment for a run: what their images install, and nothing more.

The development environment carries test and CLI packages (aiohttp, typer with rich, click
and pygments) that libraries import whenever they find them installed: the openai SDK its
aiohttp transport, structlog and httpx their rich-based helpers. Services run from it would
measure several MiB that no deployment carries, so the benchmark runs them from a virtual
environment built like the images (`pip install --constraint constraints.txt` of libs and
the four services, without extras), editable so that it always runs the checked-out code.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
from collections.abc import Callable

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV = REPO_ROOT / ".venv-bench-services"
PACKAGES = (
    "libs", "services/provider", "services/ratelimiter", "services/cache", "services/router",
)  # fmt: skip


def services_python(progress: Callable[[str], None]) -> str:
    """The interpreter of the services' environment, created or brought up to date first."""
    python = VENV / "bin" / "python"
    if not python.exists():
        progress(f"creating {VENV.name} (the services' environment, as in their images)")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    editable = [argument for package in PACKAGES for argument in ("-e", str(REPO_ROOT / package))]
    subprocess.run(
        [str(python), "-m", "pip", "install", "-qq", "--disable-pip-version-check",
         "--constraint", str(REPO_ROOT / "constraints.txt"), *editable],
        check=True,
    )  # fmt: skip
    return str(python)
