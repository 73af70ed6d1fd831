"""Runs one fake upstream as a process, for benchmarks and drills.

python -m llmmesh.testing.fake_upstreams --kind openai --port 8081 --token-delay-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from llmmesh.testing.fake_upstreams import DEFAULT_ANSWER_CHUNKS, FAKE_KINDS, Reply


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m llmmesh.testing.fake_upstreams")
    parser.add_argument("--kind", choices=sorted(FAKE_KINDS), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--first-token-delay-ms", type=float, default=0.0)
    parser.add_argument("--token-delay-ms", type=float, default=0.0)
    parser.add_argument(
        "--answer-words", type=int, default=0, help="answer length in chunks (0: the short default)"
    )
    parser.add_argument("--embedding-dimensions", type=int, default=8)
    return parser.parse_args()


async def _serve(arguments: argparse.Namespace) -> None:
    reply = Reply(
        first_token_delay_s=arguments.first_token_delay_ms / 1000,
        token_delay_s=arguments.token_delay_ms / 1000,
    )
    answer_chunks = DEFAULT_ANSWER_CHUNKS
    if arguments.answer_words > 0:
        answer_chunks = tuple(f" word{i}" if i else "word0" for i in range(arguments.answer_words))
    fake = FAKE_KINDS[arguments.kind](
        host=arguments.host,
        port=arguments.port,
        default_reply=reply,
        answer_chunks=answer_chunks,
        embedding_dimensions=arguments.embedding_dimensions,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with fake:
        # The line a parent process waits for to learn the port.
        print(f"fake {arguments.kind} upstream listening on {fake.base_url}", flush=True)
        await stop.wait()


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(_arguments()))


if __name__ == "__main__":
    main()
