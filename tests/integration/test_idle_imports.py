"""A service loads only what its configuration uses: idle memory is a target (docs/benchmarks.md).

Each case builds one service's servicer from the embedded default policy in a fresh
interpreter, with no OTLP endpoint, and checks that modules it does not need stayed out.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_BUILD = textwrap.dedent(
    """
    import asyncio, importlib, sys
    from llmmesh.policy import read_policy_document
    from llmmesh.runtime.telemetry import configure_telemetry

    async def main() -> None:
        settings = importlib.import_module("{package}.settings").{settings}()
        wiring = await importlib.import_module("{package}.wiring").build_servicer(
            settings, read_policy_document("")
        )
        configure_telemetry("{package}")
        print("\\n".join(sorted(sys.modules)))
        for close in wiring.closers:
            await close()

    asyncio.run(main())
    """
)

# redis-py imports the OpenTelemetry metrics SDK itself when it is installed, so the
# tracing SDK is what the Redis-backed services are checked for.
CASES = {
    "llmmesh_router": ("RouterSettings", ["redis", "opentelemetry.sdk"]),
    "llmmesh_ratelimiter": ("RatelimiterSettings", ["opentelemetry.sdk.trace"]),
    "llmmesh_cache": ("CacheSettings", ["numpy", "hnswlib", "opentelemetry.sdk.trace"]),
    "llmmesh_provider": ("ProviderSettings", ["openai", "anthropic", "httpx", "opentelemetry.sdk"]),
}


@pytest.mark.parametrize("package", sorted(CASES))
def test_an_idle_service_leaves_out_what_its_configuration_does_not_use(package: str) -> None:
    settings, unwanted = CASES[package]
    script = _BUILD.format(package=package, settings=settings)
    env = {"PATH": "/usr/bin:/bin", "LLMMESH_LOG_LEVEL": "warning"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())

    assert {"grpc", "pydantic", f"{package}.servicer"} <= loaded, "the probe sees the service"
    present = sorted(name for name in unwanted if name in loaded)
    assert not present, present
