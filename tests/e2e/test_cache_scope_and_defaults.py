"""The cache as the router uses it: what an "auto" answer is kept under, a per-request
semantic opt-in, and the warning when semantic lookups would run on simulated embeddings.
"""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest
import yaml

from llmmesh.common.v1 import caching_pb2, chat_pb2
from llmmesh.mesh import Mesh
from llmmesh.policy import DEFAULT_POLICY, hash_api_key, read_policy_document
from llmmesh.router.v1 import router_pb2, router_service_pb2, router_service_pb2_grpc
from llmmesh.testing.mesh import AUTH_METADATA, local_mesh

SEMANTIC_KEY = "llmmesh-semantic-tenant-key"
SEMANTIC_AUTH = (("authorization", f"Bearer {SEMANTIC_KEY}"),)


HEALTH_NOTE_WAIT_S = 30.0


@dataclasses.dataclass
class RunningMesh:
    mesh: Mesh
    log: pathlib.Path


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    folder = tmp_path_factory.mktemp("cache-scope")
    policy = read_policy_document(None)
    assert DEFAULT_POLICY  # the embedded policy, plus a tenant whose cache is semantic
    policy["tenants"].append({"name": "semantic", "api_keys_sha256": [hash_api_key(SEMANTIC_KEY)]})
    policy["cache"] = {"tenants": {"semantic": {"mode": "semantic"}}}
    # Cost and quality priorities choose different models for "auto".
    for model, quality in zip(policy["models"], (3, 9), strict=True):
        model["quality"] = quality
    policy_file = folder / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    log = folder / "services.log"
    with local_mesh(log, {"LLMMESH_POLICY_FILE": str(policy_file)}) as mesh:
        yield RunningMesh(mesh, log)


@pytest.fixture
def router(running: RunningMesh) -> Iterator[router_service_pb2_grpc.RouterServiceStub]:
    with grpc.insecure_channel(running.mesh.router_address) as channel:
        yield router_service_pb2_grpc.RouterServiceStub(channel)


def _ask(
    router: router_service_pb2_grpc.RouterServiceStub,
    prompt: str,
    metadata: tuple[tuple[str, str], ...] = AUTH_METADATA,
    **fields: object,
) -> router_pb2.CompletionSummary:
    request = router_service_pb2.StreamCompleteRequest(
        model="auto",
        messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=prompt)],
        **fields,  # type: ignore[arg-type]
    )
    events = list(router.StreamComplete(request, metadata=metadata, timeout=20))
    return events[-1].summary


def test_two_priorities_never_share_an_auto_answer(
    router: router_service_pb2_grpc.RouterServiceStub,
) -> None:
    prompt = "Name one prime number between ten and twenty."
    cheap = _ask(router, prompt, priority=router_pb2.PRIORITY_COST)
    strong = _ask(router, prompt, priority=router_pb2.PRIORITY_QUALITY)
    strong_again = _ask(router, prompt, priority=router_pb2.PRIORITY_QUALITY)
    assert cheap.model != strong.model
    assert strong.cache_status == caching_pb2.CACHE_STATUS_MISS
    assert strong_again.cache_status == caching_pb2.CACHE_STATUS_EXACT
    assert strong_again.model == strong.model


def test_a_per_request_semantic_opt_in_finds_what_it_stored(
    router: router_service_pb2_grpc.RouterServiceStub,
) -> None:
    # The dev tenant's policy is exact: only the requests opt in.
    semantic = router_pb2.CacheControl(
        mode=caching_pb2.CACHE_MODE_SEMANTIC, similarity_threshold=0.5
    )
    first = _ask(router, "What is the capital of Peru?", cache=semantic)
    again = _ask(router, "What's the capital of Peru?", cache=semantic)
    assert first.cache_status == caching_pb2.CACHE_STATUS_MISS
    assert again.cache_status == caching_pb2.CACHE_STATUS_SEMANTIC


def _health(mesh: Mesh) -> subprocess.CompletedProcess[str]:
    ports = [
        arg for service, port in mesh.health_ports.items() for arg in (f"--{service}", str(port))
    ]
    return subprocess.run(
        [sys.executable, "-c", "from llmmesh.cli import app; app()", "health", *ports],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_health_says_when_semantic_lookups_run_on_simulated_embeddings(
    running: RunningMesh,
) -> None:
    # The semantic tenant embeds through the provider, whose only embedder is simulated.
    # The cache learns that from the provider after it starts, so the note may take a probe.
    deadline = time.monotonic() + HEALTH_NOTE_WAIT_S
    done = _health(running.mesh)
    while "simulated embeddings" not in done.stdout and time.monotonic() < deadline:
        time.sleep(1.0)
        done = _health(running.mesh)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "note: semantic lookups run on simulated embeddings" in done.stdout
    assert "semantic cache on simulated embeddings" in running.log.read_text()
