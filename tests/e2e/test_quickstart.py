"""The README's run command works in a fresh clone with a fresh virtual environment.

(The README's test command is what CI runs on a fresh clone, so it proves itself there.)
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import queue
import re
import signal
import subprocess
import threading
import time

import pytest

from llmmesh.mesh import SERVICES
from llmmesh.testing.ports import free_port

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
INSTALL_AND_ANSWER_TIMEOUT_S = 600
SUMMARY_LINE = re.compile(r"\[sim-\S+ via simulated .* tokens .* request [0-9a-f]{32}\]")


def _lines(stream: object) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        # The stream may be closed under it when the test fails early.
        with contextlib.suppress(ValueError, OSError):
            for raw in stream:  # type: ignore[attr-defined]
                lines.put(raw.decode(errors="replace"))
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    return lines


@pytest.mark.slow
def test_make_run_in_a_fresh_clone_streams_an_answer_and_stops_cleanly(
    tmp_path: pathlib.Path,
) -> None:
    clone = tmp_path / "llmmesh"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "LLMMESH_"))}
    env["PATH"] = os.pathsep.join(
        p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(REPO_ROOT))
    )
    # Free ports, so a mesh already running on the default ones cannot get in the way.
    for service in SERVICES:
        env[f"LLMMESH_{service.upper()}_PORT"] = str(free_port())
    process = subprocess.Popen(
        ["make", "run"], cwd=clone, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    lines = _lines(process.stdout)
    output: list[str] = []
    deadline = time.monotonic() + INSTALL_AND_ANSWER_TIMEOUT_S
    try:
        while not any(SUMMARY_LINE.search(line) for line in output):
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            assert line, "make run ended before an answer was streamed:\n" + "".join(output)
            output.append(line)
        # Ctrl-C in a terminal: SIGINT to the whole process group.
        os.killpg(process.pid, signal.SIGINT)
        process.wait(60)
        while (line := lines.get(timeout=10)) != "":
            output.append(line)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        assert process.stdout is not None
        process.stdout.close()
    text = "".join(output)
    assert (clone / ".venv" / "bin" / "llmmesh").exists()
    assert "stopping..." in text
    assert "exited uncleanly" not in text, text
