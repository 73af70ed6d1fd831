"""Ollama through the official `ollama` client or the provider's own NDJSON reader: the costs.

Run from the repository root: `.venv/bin/python -m bench.ollama_client`. It prints, for each
way, what importing it adds to a provider process (seconds and MiB of RSS, in a fresh
interpreter that has already loaded the provider's wiring) and the client CPU time per
streamed answer against a fake Ollama running in a process of its own. The results and the
decision they support are in services/provider/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
from collections.abc import Iterator

_IMPORT_PROBE = """
import json, time, psutil
import llmmesh_provider.wiring  # what every provider process has loaded already
process = psutil.Process()
rss = process.memory_info().rss
started = time.perf_counter()
import {module}
print(json.dumps({{"import_s": time.perf_counter() - started,
                  "rss_mib": (process.memory_info().rss - rss) / 2**20}}))
"""
_WAYS = {
    "httpx (provider)": "llmmesh_provider.backends.ollama_backend",
    "ollama client": "ollama",
}


def _import_cost(module: str, runs: int) -> tuple[float, float]:
    """Median import seconds and RSS MiB over fresh interpreters."""
    samples = []
    for _ in range(runs):
        output = subprocess.run(
            [sys.executable, "-c", _IMPORT_PROBE.format(module=module)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        samples.append(json.loads(output))
    imports = sorted(sample["import_s"] for sample in samples)
    rss = sorted(sample["rss_mib"] for sample in samples)
    return imports[len(imports) // 2], rss[len(rss) // 2]


@contextlib.contextmanager
def _fake_ollama(answer_words: int) -> Iterator[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmmesh.testing.fake_upstreams",
            "--kind",
            "ollama",
            "--answer-words",
            str(answer_words),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _through_provider(base_url: str, requests: int) -> float:
    from llmmesh_provider.backend import ChatRequest, Message, Sampling, TextChunk, TextPart
    from llmmesh_provider.backends.ollama_backend import OllamaBackend

    backend = OllamaBackend("bench", base_url=base_url, request_timeout_s=30)
    request = ChatRequest(
        "bench", (Message("user", (TextPart("say something long"),)),), Sampling(), 30.0
    )

    async def once() -> int:
        return sum(
            [1 async for event in backend.stream_chat(request) if isinstance(event, TextChunk)]
        )

    await once()
    started = _cpu_s()
    for _ in range(requests):
        await once()
    spent = _cpu_s() - started
    await backend.aclose()
    return spent / requests


async def _through_client(base_url: str, requests: int) -> float:
    import ollama

    client = ollama.AsyncClient(host=base_url)
    messages = [{"role": "user", "content": "say something long"}]

    async def once() -> int:
        stream = await client.chat(model="bench", messages=messages, stream=True)
        return sum([1 async for part in stream if part.message.content])

    await once()
    started = _cpu_s()
    for _ in range(requests):
        await once()
    return (_cpu_s() - started) / requests


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ollama_client")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--answer-words", type=int, default=200)
    parser.add_argument("--import-runs", type=int, default=5)
    arguments = parser.parse_args()
    lines = arguments.answer_words
    print(f"| way | import s | import RSS MiB | client CPU ms per answer of {lines} lines |")
    print("| --- | --- | --- | --- |")
    with _fake_ollama(arguments.answer_words) as base_url:
        cpu = {
            "httpx (provider)": asyncio.run(_through_provider(base_url, arguments.requests)),
            "ollama client": asyncio.run(_through_client(base_url, arguments.requests)),
        }
    for way, module in _WAYS.items():
        import_s, rss_mib = _import_cost(module, arguments.import_runs)
        print(f"| {way} | {import_s:.3f} | {rss_mib:.1f} | {cpu[way] * 1000:.2f} |")


if __name__ == "__main__":
    main()
