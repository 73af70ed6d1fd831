"""Embeddings from the provider service's Embed RPC."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import grpc.aio
import numpy as np
import numpy.typing as npt

from llmmesh.provider.v1 import provider_service_pb2, provider_service_pb2_grpc
from llmmesh.runtime.channels import open_channel
from llmmesh.runtime.mesh_security import MeshCredentials
from llmmesh_cache.embedders.base import EmbedderUnavailableError
from llmmesh_cache.embedders.names import provider_embedder_name
from llmmesh_cache.embedders.normalize import normalized_rows


class ProviderEmbedder:
    """Calls ProviderService.Embed on one channel; the provider picks its default when unset."""

    def __init__(
        self,
        address: str,
        *,
        instance: str = "",
        model: str = "",
        timeout_s: float = 2.0,
        credentials: MeshCredentials | None = None,
    ) -> None:
        # The cache's mesh credentials: the provider admits the cache to Embed only.
        self._channel = open_channel(address, credentials=credentials)
        self._stub = provider_service_pb2_grpc.ProviderServiceStub(self._channel)
        self._instance = instance
        self._model = model
        self._timeout_s = timeout_s

    @property
    def name(self) -> str:
        return provider_embedder_name(self._instance, self._model)

    async def _call(self, texts: Sequence[str]) -> provider_service_pb2.EmbedResponse:
        request = provider_service_pb2.EmbedRequest(
            instance=self._instance, model=self._model, inputs=list(texts)
        )
        try:
            response: provider_service_pb2.EmbedResponse = await self._stub.Embed(
                request, timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as error:
            raise EmbedderUnavailableError(f"provider Embed failed: {error.code().name}") from error
        return response

    async def backend(self) -> str:
        """The backend kind that embeds for this cache ("simulated" means hashed words)."""
        return (await self._call(["probe"])).backend

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        response = await self._call(texts)
        if len(response.embeddings) != len(texts):
            raise EmbedderUnavailableError("provider Embed returned a wrong number of vectors")
        return normalized_rows(np.array([list(e.values) for e in response.embeddings]))

    async def close(self) -> None:
        await self._channel.close()
