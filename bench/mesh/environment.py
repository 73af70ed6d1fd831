"""What a benchmark run stands up: Redis, the fake upstreams, the policy file and the mesh."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from typing import IO, Any

import yaml

from llmmesh.mesh import Mesh, PeerSecurity
from llmmesh.policy import hash_api_key
from llmmesh.testing.mesh import free_mesh_ports
from llmmesh.testing.ports import free_port
from llmmesh.testing.redis_server import RedisServer

API_KEY = "llmmesh-bench-key"
TENANT = "bench"
UPSTREAM_MODEL = "gpt-4o-mini"
# The fake never checks it; the provider's OpenAI client needs some key.
UPSTREAM_KEY_ENV = "LLMMESH_BENCH_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-bench-not-a-real-key"
FAKE_START_TIMEOUT_S = 15.0
# Far above anything a run reaches, so every decision runs the full admit path and allows.
UNREACHABLE_LIMIT = 10**12


@dataclasses.dataclass(frozen=True)
class Pacing:
    """How fast an upstream answers: the benchmark's two upstream profiles."""

    name: str
    first_token_delay_ms: float
    token_delay_ms: float
    answer_chunks: int


INSTANT = Pacing("instant", first_token_delay_ms=0.0, token_delay_ms=0.0, answer_chunks=16)
PACED = Pacing("paced", first_token_delay_ms=100.0, token_delay_ms=10.0, answer_chunks=16)
PACINGS = (INSTANT, PACED)


@dataclasses.dataclass(frozen=True)
class Upstream:
    """One paced upstream as the mesh sees it (catalog model) and as a direct client does."""

    pacing: Pacing
    # The router's catalog model that reaches this upstream.
    catalog_model: str
    # The provider instance and model for calling the provider service directly.
    provider_instance: str
    provider_model: str
    # The OpenAI-compatible base URL for calling the upstream directly; "" for simulated.
    base_url: str = ""


def catalog_model_name(kind: str, pacing: Pacing) -> str:
    return f"bench-{kind}-{pacing.name}"


def provider_instance_name(kind: str, pacing: Pacing) -> str:
    return f"{kind}-{pacing.name}"


@contextlib.contextmanager
def fake_openai(pacing: Pacing, log: IO[bytes]) -> Iterator[str]:
    """A fake OpenAI server process with this pacing; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "llmmesh.testing.fake_upstreams", "--kind", "openai",
            "--port", str(port),
            "--first-token-delay-ms", str(pacing.first_token_delay_ms),
            "--token-delay-ms", str(pacing.token_delay_ms),
            "--answer-words", str(pacing.answer_chunks),
        ],
        stdout=subprocess.PIPE,
        stderr=log,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        # The fake prints one line once it listens.
        line = process.stdout.readline().decode()
        if "listening on" not in line:
            raise RuntimeError(f"the fake upstream did not start: {line!r}")
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        process.terminate()
        try:
            process.wait(FAKE_START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def policy_document(kind: str, upstreams: Mapping[Pacing, str]) -> dict[str, Any]:
    """Generous limits, an exact cache, and one catalog model per paced upstream.

    `upstreams` maps each pacing to the fake's base URL (ignored for the simulated kind).
    """
    instances: list[dict[str, Any]] = []
    models: list[dict[str, Any]] = []
    for pacing, base_url in upstreams.items():
        instance = provider_instance_name(kind, pacing)
        if kind == "openai":
            instances.append(
                {"name": instance, "backend": "openai", "base_url": base_url,
                 "api_key_env": UPSTREAM_KEY_ENV, "models": [UPSTREAM_MODEL],
                 "embedding_models": []}
            )  # fmt: skip
        else:
            instances.append(
                {"name": instance, "backend": "simulated",
                 "first_token_delay_ms": pacing.first_token_delay_ms,
                 # The simulated backend paces by rate; 0 means as fast as possible.
                 "tokens_per_s": 1000 / pacing.token_delay_ms if pacing.token_delay_ms else 0,
                 "answer_tokens": pacing.answer_chunks}
            )  # fmt: skip
        models.append(
            {"name": catalog_model_name(kind, pacing), "provider": instance,
             "upstream_model": UPSTREAM_MODEL, "context_window": 128000}
        )  # fmt: skip
    return {
        "tenants": [
            {"name": TENANT, "tier": "bench", "api_keys_sha256": [hash_api_key(API_KEY)]}
        ],
        "models": models,
        "limits": {
            "tiers": {
                "bench": [
                    {"name": "requests", "kind": "requests", "scope": "tenant",
                     "limit": UNREACHABLE_LIMIT, "window_s": 60},
                    {"name": "tokens", "kind": "tokens", "scope": "tenant",
                     "limit": UNREACHABLE_LIMIT, "window_s": 60},
                    {"name": "in-flight", "kind": "concurrency", "scope": "tenant",
                     "limit": UNREACHABLE_LIMIT},
                ]
            }
        },
        "cache": {
            "defaults": {"mode": "exact", "max_entries_per_tenant": 10**8,
                         "max_bytes_per_tenant": 2**40}
        },
        "providers": {"instances": instances},
    }  # fmt: skip


@dataclasses.dataclass
class Environment:
    """Everything started for one benchmark run."""

    kind: str
    redis: RedisServer
    mesh: Mesh
    upstreams: dict[str, Upstream]
    workdir: pathlib.Path

    def peer_credentials(self) -> dict[str, str]:
        """LoadSpec fields to call an internal service directly with the router's identity."""
        credentials = self.mesh.credentials
        if credentials is None or credentials.peers == "insecure":
            return {}
        if credentials.peers == "token":
            return {"mesh_token": credentials.token}
        router = credentials.certificates["router"]
        return {
            "tls_cert_file": str(router.cert_file),
            "tls_key_file": str(router.key_file),
            "tls_ca_file": str(router.ca_file),
        }


@contextlib.contextmanager
def running_environment(
    kind: str,
    service_env: Mapping[str, str],
    log_path: pathlib.Path,
    services_python: str = sys.executable,
    peers: PeerSecurity = "mtls",
) -> Iterator[Environment]:
    """Redis, the fake upstreams (for `openai`) and the four services, stopped on exit."""
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="llmmesh-bench-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        log = stack.enter_context(log_path.open("ab"))
        redis = RedisServer()
        redis.start()
        stack.callback(redis.close)
        base_urls = {
            pacing: stack.enter_context(fake_openai(pacing, log)) if kind == "openai" else ""
            for pacing in PACINGS
        }
        policy_path = workdir / "policy.yaml"
        policy_path.write_text(yaml.safe_dump(policy_document(kind, base_urls)))
        env = {
            **os.environ,
            "LLMMESH_REDIS_URL": redis.url,
            "LLMMESH_POLICY_FILE": str(policy_path),
            UPSTREAM_KEY_ENV: UPSTREAM_KEY,
            **service_env,
        }
        mesh = Mesh(free_mesh_ports(), env, log_to=log, python=services_python, peers=peers)
        mesh.start()
        stack.callback(mesh.stop)
        upstreams = {
            pacing.name: Upstream(
                pacing=pacing,
                catalog_model=catalog_model_name(kind, pacing),
                provider_instance=provider_instance_name(kind, pacing),
                provider_model=UPSTREAM_MODEL,
                base_url=base_urls[pacing],
            )
            for pacing in PACINGS
        }
        yield Environment(kind, redis, mesh, upstreams, workdir)
