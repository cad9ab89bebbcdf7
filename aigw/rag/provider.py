"""The RAG embedding model as a provider (named `embed`), so /v1/embeddings serves it under its
own name (`all-MiniLM-L6-v2`) through the same routing, keys, limits, cache and metrics as any
other model. It is added to the gateway when the RAG packages are installed and no configured
provider already has the name. Chat requests to it are refused with a 400."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aigw.domain import (
    Capability,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    ModelInfo,
    Usage,
)
from aigw.errors import CapabilityError, InvalidRequest, ModelNotFound
from aigw.rag.service import RagService

PROVIDER_NAME = "embed"
TYPE_NAME = "sentence_transformers"
"""What /health/detailed names this provider's type (it is built in, not configured)."""


class EmbeddingProvider:
    def __init__(self, service: RagService) -> None:
        self.name = PROVIDER_NAME
        self._service = service
        self.capabilities = frozenset({Capability.EMBED})

    def capabilities_for(self, model: str) -> frozenset[Capability]:
        return self.capabilities

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(self._service.model, self.name)]

    def _refuse(self) -> CapabilityError:
        return CapabilityError(f"{self._service.model} is an embedding model: it cannot chat", param="model")

    async def chat(self, req: ChatRequest) -> ChatResponse:
        raise self._refuse()

    async def stream_chat(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise self._refuse()
        yield  # pragma: no cover  (makes this an async generator)

    async def embed(self, req: EmbedRequest) -> EmbedResponse:
        if req.model != self._service.model:
            raise ModelNotFound(f"{self.name} serves only {self._service.model!r}", param="model")
        inputs = req.inputs
        if not all(isinstance(x, str) for x in inputs):
            raise InvalidRequest(f"{self._service.model} takes text input, not token ids", param="input")
        if req.body.get("dimensions") is not None:
            raise CapabilityError(
                f"{self._service.model} has a fixed dimension; drop 'dimensions'", param="dimensions"
            )
        vectors, tokens = await self._service.embed([str(x) for x in inputs])
        # encoding_format is applied by the pipeline, for every target
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        return EmbedResponse(model=self._service.model, data=data, usage=Usage(tokens, 0, tokens))

    async def aclose(self) -> None:
        return None
