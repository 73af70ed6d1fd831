"""The `providers` policy section: working defaults, and errors that name the bad field."""

from __future__ import annotations

from typing import Any

import pytest

from llmmesh.policy import PolicyError
from llmmesh_provider.config import SIMULATED_INSTANCE_NAME, parse_provider_policy
from llmmesh_provider.settings import ProviderSettings


def test_no_section_means_one_simulated_instance_that_also_embeds() -> None:
    section = parse_provider_policy({}).providers

    assert [i.name for i in section.instances] == [SIMULATED_INSTANCE_NAME]
    assert section.default_embedder() == (SIMULATED_INSTANCE_NAME, "simulated-embed")


def test_several_instances_per_backend_are_accepted() -> None:
    section = parse_provider_policy(
        {
            "providers": {
                "instances": [
                    {"name": "openai-primary", "backend": "openai", "models": ["gpt-4o-mini"]},
                    {
                        "name": "openai-secondary",
                        "backend": "openai",
                        "base_url": "http://127.0.0.1:8000/v1",
                        "api_key_env": "",
                        "embedding_models": ["bge"],
                    },
                    {"name": "claude", "backend": "anthropic", "models": ["claude-x"]},
                ],
                "embeddings": {"instance": "openai-secondary"},
            }
        }
    ).providers

    assert [i.name for i in section.instances] == ["openai-primary", "openai-secondary", "claude"]
    assert section.default_embedder() == ("openai-secondary", "bge")


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ({"instances": [{"name": "x", "backend": "gemini"}]}, "providers.instances[0]"),
        (
            {"instances": [{"name": "x", "backend": "openai", "base_ur": "http://h"}]},
            "providers.instances[0].openai.base_ur",
        ),
        (
            {"instances": [{"name": "x", "backend": "openai", "base_url": "not a url"}]},
            "providers.instances[0].openai.base_url",
        ),
        (
            {"instances": [{"name": "Bad Name", "backend": "simulated"}]},
            "providers.instances[0].simulated.name",
        ),
        (
            {"instances": [{"name": "c", "backend": "anthropic", "embedding_models": ["e"]}]},
            "providers.instances[0].anthropic.embedding_models",
        ),
        (
            {
                "instances": [
                    {"name": "s", "backend": "simulated", "faults": {"unavailable_rate": 2}}
                ]
            },
            "providers.instances[0].simulated.faults.unavailable_rate",
        ),
        (
            {
                "instances": [
                    {"name": "a", "backend": "simulated"},
                    {"name": "a", "backend": "simulated"},
                ]
            },
            "duplicate names",
        ),
        ({"instances": []}, "providers.instances"),
        ({"embeddings": {"instance": "missing"}}, "embeddings.instance"),
        (
            {"embeddings": {"instance": "simulated", "model": "other"}},
            "embeddings.model",
        ),
    ],
)
def test_a_bad_section_fails_naming_the_field(section: dict[str, Any], named: str) -> None:
    with pytest.raises(PolicyError, match=named.replace("[", r"\[").replace("]", r"\]")):
        parse_provider_policy({"providers": section})


def test_settings_default_to_port_50054_and_read_the_provider_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ProviderSettings().port == 50054
    monkeypatch.setenv("LLMMESH_PROVIDER_PORT", "6001")
    monkeypatch.setenv("LLMMESH_PROVIDER_MAX_EMBED_INPUTS", "9")

    settings = ProviderSettings()

    assert (settings.port, settings.max_embed_inputs) == (6001, 9)
