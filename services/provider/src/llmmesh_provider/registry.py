"""The configured provider instances, built from the policy, and the lookups requests make."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

import grpc
import structlog

from llmmesh.runtime.errors import FieldViolation, RpcFailure
from llmmesh_provider.backend import ChatBackend, Embedder
from llmmesh_provider.backends.simulated_backend import SimulatedBackend
from llmmesh_provider.config import (
    AnthropicInstance,
    InstanceConfig,
    KeyedInstanceConfig,
    LocalEmbeddingInstance,
    OllamaInstance,
    OpenAIInstance,
    ProvidersSection,
    SimulatedInstance,
)
from llmmesh_provider.key_files import KeyFile, KeyFileWatch
from llmmesh_provider.upstream_errors import UpstreamTarget, missing_credentials

if TYPE_CHECKING:
    from llmmesh_provider.backends.anthropic_backend import AnthropicBackend

logger = structlog.get_logger(__name__)

# Sent to OpenAI-compatible endpoints that take no key (the SDK insists on some value).
NO_KEY_PLACEHOLDER = "no-key"


@dataclasses.dataclass(frozen=True)
class ProviderInstance:
    """One configured upstream, ready to serve."""

    name: str
    backend: str
    models: tuple[str, ...]
    embedding_models: tuple[str, ...]
    request_timeout_s: float
    chat: ChatBackend | None
    embedder: Embedder | None
    # Set when the instance's key variable is missing: its requests fail without a call.
    missing_key_env: str | None = None


class ProviderRegistry:
    """Finds the instance and model a request names, or says precisely why it cannot."""

    def __init__(
        self,
        instances: list[ProviderInstance],
        default_embedder: tuple[str, str] | None,
        key_files: KeyFileWatch | None = None,
    ) -> None:
        self._instances = {instance.name: instance for instance in instances}
        self._default_embedder = default_embedder
        # The instances whose keys come from files, re-read on reload.
        self.key_files = key_files or KeyFileWatch()

    @property
    def instances(self) -> list[ProviderInstance]:
        return list(self._instances.values())

    def chat_backend(self, instance_name: str, model: str) -> tuple[ProviderInstance, ChatBackend]:
        instance = self._instance(instance_name, field="instance")
        if instance.chat is None and instance.missing_key_env is None:
            raise _not_found(
                "instance", f"instance {instance_name!r} serves no chat models", "UNKNOWN_INSTANCE"
            )
        if instance.models and model not in instance.models:
            raise _not_found(
                "model",
                f"instance {instance_name!r} serves no model {model!r} "
                f"(configured: {', '.join(instance.models)})",
                "UNKNOWN_MODEL",
            )
        if instance.chat is None:
            raise missing_credentials(
                UpstreamTarget(instance.name, instance.backend, model),
                instance.missing_key_env or "",
            )
        return instance, instance.chat

    def embedder(self, instance_name: str, model: str) -> tuple[ProviderInstance, Embedder, str]:
        """The embedder and model for a request; empty names pick the configured default."""
        if not instance_name:
            if self._default_embedder is None:
                raise RpcFailure(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "no instance is configured to embed",
                    reason="NO_EMBEDDER_CONFIGURED",
                )
            instance_name, default_model = self._default_embedder
            model = model or default_model
        instance = self._instance(instance_name, field="instance")
        if not instance.embedding_models:
            raise _not_found(
                "instance", f"instance {instance_name!r} serves no embeddings", "UNKNOWN_INSTANCE"
            )
        model = model or instance.embedding_models[0]
        if model not in instance.embedding_models:
            raise _not_found(
                "model",
                f"instance {instance_name!r} serves no embedding model {model!r} "
                f"(configured: {', '.join(instance.embedding_models)})",
                "UNKNOWN_MODEL",
            )
        if instance.embedder is None:
            raise missing_credentials(
                UpstreamTarget(instance.name, instance.backend, model),
                instance.missing_key_env or "",
            )
        return instance, instance.embedder, model

    async def aclose(self) -> None:
        # One backend object often serves both roles; close each object once.
        parts: list[ChatBackend | Embedder] = []
        for instance in self._instances.values():
            for part in (instance.chat, instance.embedder):
                if part is not None and all(part is not seen for seen in parts):
                    parts.append(part)
        for part in parts:
            await part.aclose()

    def _instance(self, name: str, *, field: str) -> ProviderInstance:
        instance = self._instances.get(name)
        if instance is None:
            raise _not_found(
                field,
                f"no provider instance named {name!r} (configured: {', '.join(self._instances)})",
                "UNKNOWN_INSTANCE",
            )
        return instance


def _not_found(field: str, description: str, reason: str) -> RpcFailure:
    return RpcFailure(
        grpc.StatusCode.NOT_FOUND,
        description,
        reason=reason,
        field_violations=[FieldViolation(field, description)],
    )


async def build_registry(section: ProvidersSection, environ: Mapping[str, str]) -> ProviderRegistry:
    """Builds every configured instance; keys are read from `environ` or files, never logged.

    Raises PolicyError naming the field when a key file cannot be read.
    """
    key_files = KeyFileWatch()
    instances = [
        await _build_instance(config, f"providers.instances[{index}]", environ, key_files)
        for index, config in enumerate(section.instances)
    ]
    return ProviderRegistry(instances, section.default_embedder(), key_files)


async def _build_instance(
    config: InstanceConfig, field: str, environ: Mapping[str, str], key_files: KeyFileWatch
) -> ProviderInstance:
    # Each backend is imported when an instance uses it: the SDKs, HTTP clients and model
    # libraries behind them cost from one to tens of MiB in every process.
    if isinstance(config, SimulatedInstance):
        simulated = SimulatedBackend(config)
        return _ready(config, chat=simulated, embedder=simulated)
    if isinstance(config, LocalEmbeddingInstance):
        from llmmesh_provider.backends.local_embedder import LocalEmbedder

        local = await LocalEmbedder.load(config.embedding_models[0], config.device)
        return _ready(config, chat=None, embedder=local)
    if isinstance(config, OllamaInstance):
        from llmmesh_provider.backends.ollama_backend import OllamaBackend

        ollama = OllamaBackend(
            config.name, base_url=str(config.base_url), request_timeout_s=config.request_timeout_s
        )
        return _ready(config, chat=ollama, embedder=ollama)
    key_file = KeyFile(config.api_key_file, f"{field}.api_key_file")
    api_key = key_file.read() if config.api_key_file else _key_from_environment(config, environ)
    if not api_key:
        logger.warning(
            "provider instance has no API key; its requests will fail",
            instance=config.name,
            api_key_env=config.api_key_env,
        )
        return _ready(config, chat=None, embedder=None, missing_key_env=config.api_key_env)
    if isinstance(config, OpenAIInstance):
        from llmmesh_provider.backends.openai_backend import OpenAIBackend

        openai_backend = OpenAIBackend(
            config.name,
            base_url=str(config.base_url),
            api_key=api_key,
            request_timeout_s=config.request_timeout_s,
            embedding_dimensions=config.embedding_dimensions,
        )
        if config.api_key_file:
            key_files.add(config.name, key_file, openai_backend, api_key)
        return _ready(
            config,
            chat=openai_backend,
            embedder=openai_backend if config.embedding_models else None,
        )
    anthropic_backend = _anthropic(config, api_key)
    if config.api_key_file:
        key_files.add(config.name, key_file, anthropic_backend, api_key)
    return _ready(config, chat=anthropic_backend, embedder=None)


def _key_from_environment(config: KeyedInstanceConfig, environ: Mapping[str, str]) -> str:
    """The key the instance's variable holds; "" when it is unset; a placeholder for none."""
    if not config.api_key_env:
        return NO_KEY_PLACEHOLDER
    return environ.get(config.api_key_env, "")


def _anthropic(config: AnthropicInstance, api_key: str) -> AnthropicBackend:
    from llmmesh_provider.backends.anthropic_backend import AnthropicBackend

    return AnthropicBackend(
        config.name,
        base_url=str(config.base_url),
        api_key=api_key,
        request_timeout_s=config.request_timeout_s,
        default_max_tokens=config.default_max_tokens,
    )


def _ready(
    config: InstanceConfig,
    *,
    chat: ChatBackend | None,
    embedder: Embedder | None,
    missing_key_env: str | None = None,
) -> ProviderInstance:
    return ProviderInstance(
        name=config.name,
        backend=config.backend,
        models=tuple(config.models),
        embedding_models=tuple(config.embedding_models),
        request_timeout_s=config.request_timeout_s,
        chat=chat,
        embedder=embedder,
        missing_key_env=missing_key_env,
    )
