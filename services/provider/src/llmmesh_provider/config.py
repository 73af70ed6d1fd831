"""The `providers` section of the policy file: upstream instances and the default embedder.

    providers:
      instances:
        - {name: openai-primary, backend: openai, api_key_env: OPENAI_API_KEY,
           models: [gpt-4o-mini], embedding_models: [text-embedding-3-small]}
        - {name: claude, backend: anthropic, api_key_file: /etc/llmmesh/provider-keys/anthropic,
           models: [claude-sonnet-4-5], default_max_tokens: 4096}
        - {name: local-llama, backend: ollama, base_url: "http://127.0.0.1:11434",
           models: [llama3.2]}
        - {name: minilm, backend: local}
      embeddings: {instance: minilm}

With no section at all the service runs one `simulated` instance that also embeds.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic

from llmmesh.policy import StrictModel, parse_section

INSTANCE_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
LOCAL_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


class _Instance(StrictModel):
    """What every instance has: a name callers use and the models it serves."""

    name: str = pydantic.Field(pattern=INSTANCE_NAME_PATTERN)
    # Chat models; empty accepts any model name the upstream knows (an open endpoint).
    models: list[str] = pydantic.Field(default_factory=list)
    # Embedding models; the first is the instance's default.
    embedding_models: list[str] = pydantic.Field(default_factory=list)
    # Upper bound on one upstream call when the caller sets no shorter deadline.
    request_timeout_s: float = pydantic.Field(default=600.0, gt=0)

    @pydantic.field_validator("models", "embedding_models")
    @classmethod
    def _names_unique_and_set(cls, names: list[str]) -> list[str]:
        if any(not name.strip() for name in names):
            raise ValueError("model names must not be empty")
        if len(set(names)) != len(names):
            raise ValueError("model names must be unique")
        return names


class _KeyedInstance(_Instance):
    # Name of the environment variable that holds the key; the key never enters the file.
    api_key_env: str = pydantic.Field(default="", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$|^$")
    # Or a file that holds the key (a mounted Secret), re-read on SIGHUP; set one of the two.
    api_key_file: str = ""

    @pydantic.model_validator(mode="after")
    def _one_key_source(self) -> _KeyedInstance:
        if self.api_key_file and "api_key_env" in self.model_fields_set:
            raise ValueError("set api_key_env or api_key_file, not both")
        return self


class OpenAIInstance(_KeyedInstance):
    """The OpenAI API or any OpenAI-compatible endpoint (vLLM, LiteLLM, Azure's v1 API)."""

    backend: Literal["openai"]
    base_url: pydantic.HttpUrl = pydantic.HttpUrl("https://api.openai.com/v1")
    api_key_env: str = "OPENAI_API_KEY"
    # Requested embedding length for models that can shorten their vectors.
    embedding_dimensions: int | None = pydantic.Field(default=None, gt=0)


class AnthropicInstance(_KeyedInstance):
    """The Anthropic Messages API."""

    backend: Literal["anthropic"]
    base_url: pydantic.HttpUrl = pydantic.HttpUrl("https://api.anthropic.com")
    api_key_env: str = "ANTHROPIC_API_KEY"
    # Anthropic requires max_tokens; sent when the request leaves it at 0.
    default_max_tokens: int = pydantic.Field(default=4096, gt=0)

    @pydantic.field_validator("embedding_models")
    @classmethod
    def _no_embeddings(cls, names: list[str]) -> list[str]:
        if names:
            raise ValueError("the Anthropic API has no embeddings endpoint")
        return names


class OllamaInstance(_Instance):
    """An Ollama server's native API."""

    backend: Literal["ollama"]
    base_url: pydantic.HttpUrl = pydantic.HttpUrl("http://127.0.0.1:11434")


class SimulatedFaults(StrictModel):
    """Seeded fault injection, so a drill replays the same failures in the same order."""

    seed: int = 0
    # Probability that a request fails UNAVAILABLE before its first token.
    unavailable_rate: float = pydantic.Field(default=0.0, ge=0, le=1)
    # Probability that a request is refused as rate-limited before its first token.
    rate_limited_rate: float = pydantic.Field(default=0.0, ge=0, le=1)
    # Probability that a stream is cut part-way (after at least one token).
    stream_cut_rate: float = pydantic.Field(default=0.0, ge=0, le=1)


class SimulatedInstance(_Instance):
    """Deterministic answers derived from the prompt; needs no key and no network."""

    backend: Literal["simulated"]
    # Empty, the default, plays any model name, so a catalog can name models freely.
    embedding_models: list[str] = pydantic.Field(default_factory=lambda: ["simulated-embed"])
    first_token_delay_ms: float = pydantic.Field(default=0.0, ge=0)
    # 0 streams as fast as possible.
    tokens_per_s: float = pydantic.Field(default=0.0, ge=0)
    answer_tokens: int = pydantic.Field(default=48, gt=0)
    embedding_dimensions: int = pydantic.Field(default=64, gt=0, le=8192)
    faults: SimulatedFaults = SimulatedFaults()


class LocalEmbeddingInstance(_Instance):
    """A sentence-embedding model run in-process (needs the `local-embeddings` extra)."""

    backend: Literal["local"]
    embedding_models: list[str] = pydantic.Field(default_factory=lambda: [LOCAL_EMBEDDING_MODEL])
    device: str = "cpu"

    @pydantic.field_validator("models")
    @classmethod
    def _no_chat(cls, names: list[str]) -> list[str]:
        if names:
            raise ValueError("a local embedding instance serves no chat models")
        return names

    @pydantic.field_validator("embedding_models")
    @classmethod
    def _only_packaged_model(cls, names: list[str]) -> list[str]:
        if names != [LOCAL_EMBEDDING_MODEL]:
            raise ValueError(f"the local backend serves exactly [{LOCAL_EMBEDDING_MODEL}]")
        return names


InstanceConfig = Annotated[
    OpenAIInstance
    | AnthropicInstance
    | OllamaInstance
    | SimulatedInstance
    | LocalEmbeddingInstance,
    pydantic.Field(discriminator="backend"),
]

# The instances that need an upstream key.
KeyedInstanceConfig = OpenAIInstance | AnthropicInstance

SIMULATED_INSTANCE_NAME = "simulated"


class EmbeddingsDefault(StrictModel):
    """The embedder used when an Embed request names no instance."""

    instance: str = pydantic.Field(min_length=1)
    # Empty means the instance's first embedding model.
    model: str = ""


def _default_instances() -> list[InstanceConfig]:
    return [SimulatedInstance(name=SIMULATED_INSTANCE_NAME, backend="simulated")]


class ProvidersSection(StrictModel):
    """Every upstream the service can call."""

    instances: list[InstanceConfig] = pydantic.Field(
        default_factory=lambda: _default_instances(), min_length=1
    )
    # None picks the first instance that lists embedding models.
    embeddings: EmbeddingsDefault | None = None

    @pydantic.model_validator(mode="after")
    def _references_resolve(self) -> ProvidersSection:
        names = [instance.name for instance in self.instances]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"instances: duplicate names {duplicates}")
        if self.embeddings is None:
            return self
        by_name = {instance.name: instance for instance in self.instances}
        default = by_name.get(self.embeddings.instance)
        if default is None:
            raise ValueError(f"embeddings.instance: no instance named {self.embeddings.instance!r}")
        if not default.embedding_models:
            raise ValueError(f"embeddings.instance: {default.name!r} lists no embedding_models")
        if self.embeddings.model and self.embeddings.model not in default.embedding_models:
            raise ValueError(
                f"embeddings.model: {self.embeddings.model!r} is not in "
                f"{default.name}.embedding_models"
            )
        return self

    def default_embedder(self) -> tuple[str, str] | None:
        """(instance, model) that serves Embed requests naming neither, if any instance embeds."""
        if self.embeddings is not None:
            instance = next(i for i in self.instances if i.name == self.embeddings.instance)
            return instance.name, self.embeddings.model or instance.embedding_models[0]
        for instance in self.instances:
            if instance.embedding_models:
                return instance.name, instance.embedding_models[0]
        return None


class ProviderPolicy(StrictModel):
    """The part of the policy document the provider service reads."""

    providers: ProvidersSection = ProvidersSection()


def parse_provider_policy(document: dict[str, Any]) -> ProviderPolicy:
    """Validates the `providers` section; raises PolicyError naming the bad field."""
    return parse_section(document, ProviderPolicy, "providers")
