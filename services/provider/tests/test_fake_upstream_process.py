"""The fake upstreams also run as their own process, for benchmarks and drills."""

from __future__ import annotations

import asyncio
import sys

import pytest

from llmmesh.testing.fake_upstreams import FAKE_KINDS
from llmmesh.testing.ports import free_port
from llmmesh_provider.testing import (
    TEST_KEY_ENV,
    collect,
    generate_request,
    policy_with,
    running_provider,
)

READY_TIMEOUT_S = 15.0


@pytest.mark.parametrize("kind", sorted(FAKE_KINDS))
async def test_a_fake_upstream_process_serves_the_provider(
    kind: str,
) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "llmmesh.testing.fake_upstreams",
        "--kind",
        kind,
        "--port",
        str(port),
        "--answer-words",
        "5",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        ready = await asyncio.wait_for(process.stdout.readline(), READY_TIMEOUT_S)
        base_url = ready.decode().split(" on ")[-1].strip()
        assert f":{port}" in base_url
        instance = {"name": "upstream", "backend": kind, "base_url": base_url}
        if kind != "ollama":
            instance["api_key_env"] = TEST_KEY_ENV
        async with running_provider(policy_with(instance)) as stub:
            outcome = await collect(stub, generate_request())
    finally:
        process.terminate()
        exit_code = await asyncio.wait_for(process.wait(), READY_TIMEOUT_S)

    assert outcome.error is None
    assert outcome.text == "word0 word1 word2 word3 word4"
    assert exit_code == 0
