"""Upstream keys from files: sent upstream, replaced on reload, and errors that name the file."""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import grpc.aio
import pytest
import structlog

from llmmesh.policy import PolicyError
from llmmesh.runtime.wiring import Wiring
from llmmesh.testing.fake_upstreams import FakeOpenAI, FakeUpstream, Reply
from llmmesh_provider.config import parse_provider_policy
from llmmesh_provider.key_files import MAX_KEY_FILE_BYTES, KeyFile
from llmmesh_provider.settings import ProviderSettings
from llmmesh_provider.testing import (
    collect,
    generate_request,
    instance_for,
    policy_with,
    serving,
)
from llmmesh_provider.wiring import build_servicer

FIRST_KEY = "sk-file-first-7c1d9e"
SECOND_KEY = "sk-file-second-3a8b54"
KEYED_KINDS = ["openai", "anthropic"]


def sent_key(fake: FakeUpstream) -> str:
    """The key the last request carried (Anthropic's SDK sends either header)."""
    headers = fake.last_request.headers
    if "x-api-key" in headers:
        return headers["x-api-key"]
    scheme, _, key = headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    return key


def keyed_policy(fake: FakeUpstream, key_file: pathlib.Path) -> dict[str, Any]:
    return policy_with(instance_for(fake, api_key_file=str(key_file)))


@contextlib.asynccontextmanager
async def provider_wiring(policy: dict[str, Any]) -> AsyncIterator[tuple[Wiring, Any]]:
    """The wiring (to reload through) and a stub of the provider it serves."""
    wiring = await build_servicer(ProviderSettings(), policy)
    try:
        async with serving(wiring.servicer) as stub:
            yield wiring, stub
    finally:
        for close in wiring.closers:
            await close()


@pytest.fixture
def key_file(tmp_path: pathlib.Path) -> pathlib.Path:
    """A key file as `echo` writes it: the first key and a newline."""
    path = tmp_path / "key"
    path.write_text(f"{FIRST_KEY}\n")
    return path


def rewrite(path: pathlib.Path, content: str | None) -> None:
    """Replaces the key file's content, as a rotated Secret does; None removes the file."""
    if content is None:
        path.unlink()
    else:
        path.write_text(content)


def reload(wiring: Wiring) -> None:
    for reloader in wiring.reloaders:
        reloader({})


@pytest.mark.parametrize("fake_upstream", KEYED_KINDS, indirect=True)
async def test_the_key_in_the_file_is_sent_without_its_trailing_newline(
    fake_upstream: FakeUpstream, key_file: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The backend's default variable is set too: the file, not the variable, is the source.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-the-environment")
    async with provider_wiring(keyed_policy(fake_upstream, key_file)) as (_, stub):
        outcome = await collect(stub, generate_request())

    assert outcome.error is None
    assert sent_key(fake_upstream) == FIRST_KEY


@pytest.mark.parametrize("fake_upstream", KEYED_KINDS, indirect=True)
async def test_a_reload_sends_the_rotated_key_from_the_next_request_on(
    fake_upstream: FakeUpstream, key_file: pathlib.Path
) -> None:
    async with provider_wiring(keyed_policy(fake_upstream, key_file)) as (wiring, stub):
        await collect(stub, generate_request())
        rewrite(key_file, f"{SECOND_KEY}\n")
        # Until the reload, the key read at start stays in use.
        await collect(stub, generate_request())
        assert sent_key(fake_upstream) == FIRST_KEY
        reload(wiring)
        outcome = await collect(stub, generate_request())

    assert outcome.error is None
    assert sent_key(fake_upstream) == SECOND_KEY


@pytest.mark.parametrize("fake_upstream", KEYED_KINDS, indirect=True)
async def test_a_stream_in_flight_during_a_reload_finishes(
    fake_upstream: FakeUpstream, key_file: pathlib.Path
) -> None:
    fake_upstream.enqueue(Reply(token_delay_s=0.05))
    async with provider_wiring(keyed_policy(fake_upstream, key_file)) as (wiring, stub):
        call = stub.Generate(generate_request(), timeout=10)
        first = await call.read()
        rewrite(key_file, SECOND_KEY)
        reload(wiring)
        rest = []
        while (response := await call.read()) is not grpc.aio.EOF:
            rest.append(response)

    assert first.HasField("delta")
    assert rest[-1].HasField("summary")
    assert sent_key(fake_upstream) == FIRST_KEY


@pytest.mark.parametrize("fake_upstream", ["openai"], indirect=True)
async def test_a_reload_that_cannot_read_the_file_keeps_the_old_key_and_names_the_file(
    fake_upstream: FakeUpstream, key_file: pathlib.Path
) -> None:
    async with provider_wiring(keyed_policy(fake_upstream, key_file)) as (wiring, stub):
        rewrite(key_file, None)
        with pytest.raises(PolicyError) as raised:
            reload(wiring)
        outcome = await collect(stub, generate_request())

    assert "providers.instances[0].api_key_file" in str(raised.value)
    assert str(key_file) in str(raised.value)
    assert outcome.error is None
    assert sent_key(fake_upstream) == FIRST_KEY


async def test_one_unreadable_file_changes_no_key_on_reload(tmp_path: pathlib.Path) -> None:
    # All or nothing, like a policy reload: instance a's rotated key waits for b's file.
    async with contextlib.AsyncExitStack() as stack:
        fakes = [await stack.enter_async_context(FakeOpenAI()) for _ in range(2)]
        files = [tmp_path / "a", tmp_path / "b"]
        for key_file in files:
            rewrite(key_file, FIRST_KEY)
        instances = [
            instance_for(fake, name, api_key_file=str(key_file))
            for name, fake, key_file in zip("ab", fakes, files, strict=True)
        ]
        wiring, stub = await stack.enter_async_context(provider_wiring(policy_with(*instances)))
        rewrite(files[0], SECOND_KEY)
        rewrite(files[1], "")
        with pytest.raises(PolicyError, match=r"providers\.instances\[1\]\.api_key_file"):
            reload(wiring)
        await collect(stub, generate_request(instance="a"))

        assert sent_key(fakes[0]) == FIRST_KEY


@pytest.mark.parametrize("fake_upstream", KEYED_KINDS, indirect=True)
async def test_a_missing_file_at_start_fails_naming_the_file_and_the_field(
    fake_upstream: FakeUpstream, tmp_path: pathlib.Path
) -> None:
    missing = tmp_path / "not-mounted"
    with pytest.raises(PolicyError) as raised:
        await build_servicer(ProviderSettings(), keyed_policy(fake_upstream, missing))

    message = str(raised.value)
    assert "providers.instances[0].api_key_file" in message
    assert str(missing) in message
    assert "No such file or directory" in message


def test_an_instance_takes_a_key_variable_or_a_key_file_not_both() -> None:
    instance = {
        "name": "x",
        "backend": "openai",
        "api_key_env": "OPENAI_API_KEY",
        "api_key_file": "/run/keys/openai",
    }
    with pytest.raises(PolicyError, match=r"instances\[0\]\.openai: .*api_key_env or api_key_file"):
        parse_provider_policy(policy_with(instance))


def test_only_keyed_backends_take_a_key_file() -> None:
    instance = {"name": "o", "backend": "ollama", "api_key_file": "/run/keys/ollama"}
    with pytest.raises(PolicyError, match=r"instances\[0\]\.ollama\.api_key_file"):
        parse_provider_policy(policy_with(instance))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"\n  \n", "empty"),
        (b"sk-one\nsk-two\n", "more than one key"),
        (b"sk-one sk-two", "more than one key"),
        (b"sk-\x00key", "more than one key"),
        ("sk-schlüssel".encode(), "not ASCII"),
        (b"k" * (MAX_KEY_FILE_BYTES + 1), "larger than"),
    ],
    ids=["empty", "blank", "two-lines", "two-words", "control", "non-ascii", "huge"],
)
def test_a_file_that_holds_no_single_key_is_refused_without_echoing_it(
    tmp_path: pathlib.Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    with pytest.raises(PolicyError, match=reason) as raised:
        KeyFile(str(path), "providers.instances[3].api_key_file").read()

    assert "providers.instances[3].api_key_file" in str(raised.value)
    assert "sk-one" not in str(raised.value)
    assert "schl" not in str(raised.value)


def test_a_directory_or_a_fifo_is_refused_without_blocking(tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (tmp_path, fifo):
        with pytest.raises(PolicyError, match="not a regular file"):
            KeyFile(str(path), "providers.instances[0].api_key_file").read()


@pytest.mark.parametrize("fake_upstream", ["openai"], indirect=True)
async def test_keys_from_files_never_reach_the_logs(
    fake_upstream: FakeUpstream, key_file: pathlib.Path
) -> None:
    with structlog.testing.capture_logs() as logs:
        async with provider_wiring(keyed_policy(fake_upstream, key_file)) as (wiring, stub):
            await collect(stub, generate_request())
            rewrite(key_file, SECOND_KEY)
            reload(wiring)
            rewrite(key_file, f"{FIRST_KEY}\n{SECOND_KEY}")
            with pytest.raises(PolicyError):
                reload(wiring)

    assert any(entry["event"] == "upstream_api_key_replaced" for entry in logs)
    for entry in logs:
        assert FIRST_KEY not in repr(entry)
        assert SECOND_KEY not in repr(entry)
