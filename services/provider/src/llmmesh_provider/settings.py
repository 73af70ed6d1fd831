"""The provider service's settings, from `LLMMESH_PROVIDER_*` environment variables."""

from __future__ import annotations

import pydantic
from pydantic_settings import SettingsConfigDict

from llmmesh.runtime.settings import ServiceSettings
from llmmesh.validation import DEFAULT_MAX_IMAGE_BYTES


class ProviderSettings(ServiceSettings):
    """Serving knobs; upstream instances and keys come from the policy file and its env vars."""

    model_config = SettingsConfigDict(env_prefix="LLMMESH_PROVIDER_", extra="ignore", frozen=True)

    port: int = pydantic.Field(default=50054, ge=0, le=65535)
    # Most texts one Embed request may carry (OpenAI's own limit is 2048).
    max_embed_inputs: int = pydantic.Field(default=256, gt=0)
    max_embed_input_chars: int = pydantic.Field(default=32_768, gt=0)
    # Largest inline image (decoded bytes); the gRPC message limit bounds a request's total.
    max_image_bytes: int = pydantic.Field(default=DEFAULT_MAX_IMAGE_BYTES, gt=0)
    # Taken off the caller's remaining deadline before it bounds the upstream call, so the
    # upstream gives up first and the caller receives the rich DEADLINE_EXCEEDED with details
    # instead of the transport's bare one.
    deadline_margin_ms: float = pydantic.Field(default=50.0, ge=0)
