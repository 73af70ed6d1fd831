"""A cache that serves exact answers only never loads numpy, hnswlib or the word dictionaries.

Cache keys name the embedder's vector space, so every lookup needs that name; building the
embedder to learn it would import numpy (about 11 MiB of an idle service). Run in a fresh
interpreter, since this one has numpy loaded by other tests.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_STORE_AND_LOOK_UP = textwrap.dedent(
    """
    import asyncio, sys
    from llmmesh.common.v1 import caching_pb2
    from llmmesh_cache.testing import policy_document, scope, start_cache_node

    async def main(redis_url: str, mode: str) -> None:
        node = await start_cache_node(redis_url, policy_document(mode=mode))
        try:
            stored = await node.store(scope("what is the capital of France?"))
            found = await node.lookup(scope("what is the capital of France?"))
            assert stored.stored, stored
            assert found.status == caching_pb2.CACHE_STATUS_EXACT, found
        finally:
            await node.close()
        modules = ("numpy", "hnswlib", "simplemma")
        print("loaded:", *sorted(m for m in modules if m in sys.modules))

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@pytest.mark.parametrize(("mode", "loaded"), [("exact", set()), ("semantic", {"hnswlib", "numpy"})])
def test_only_a_semantic_cache_loads_the_vector_libraries(
    redis_url: str, mode: str, loaded: set[str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _STORE_AND_LOOK_UP, redis_url, mode],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    # The last line; the service's own log lines come before it.
    last = done.stdout.strip().splitlines()[-1].split()
    assert last[0] == "loaded:"
    # The word dictionaries of a semantic cache load in the background, maybe not yet.
    assert loaded <= set(last[1:]) <= loaded | {"simplemma"}, done.stderr[-3000:]
