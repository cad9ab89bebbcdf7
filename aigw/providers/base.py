"""The Provider protocol: the one seam every backend, local or cloud, implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from aigw.completion import CompletionRequest
from aigw.domain import (
    Capability,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    ModelInfo,
)
from aigw.reranking import RerankRequest, RerankResponse

if TYPE_CHECKING:
    pass


class Provider(Protocol):
    """A backend. Implementations raise only `aigw.errors` types.

    `stream_chat` is an async generator; failures before the first chunk surface from the first
    `__anext__()`, so the caller can still answer with an HTTP error (or fall back).
    """

    name: str
    capabilities: frozenset[Capability]
    """Everything the provider can do for some model."""

    def capabilities_for(self, model: str) -> frozenset[Capability]:
        """What it can do for this model (a local model declares its own)."""
        ...

    async def list_models(self) -> list[ModelInfo]: ...

    async def chat(self, req: ChatRequest) -> ChatResponse: ...

    def stream_chat(self, req: ChatRequest) -> AsyncIterator[ChatChunk]: ...

    async def embed(self, req: EmbedRequest) -> EmbedResponse: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ConfiguredListing(Protocol):
    """A provider whose model list may come from its configuration alone (model discovery off).
    Only an answer from the upstream counts as contact: a listing made without one must not
    mark a dead upstream healthy."""

    def listing_contacts_upstream(self) -> bool: ...


@runtime_checkable
class KnowsContext(Protocol):
    """A provider that knows each model's context length (a local model's own metadata)."""

    def context_length(self, model: str) -> int | None: ...


@runtime_checkable
class TokenCounting(Protocol):
    """A provider that can count a chat request's prompt tokens exactly (its own tokenizer, or its
    upstream's counting endpoint), without generating anything."""

    async def count_tokens(self, req: ChatRequest) -> int: ...


class Fingerprinted(Protocol):
    """A provider whose models' identity is more than their name (local weights that can be
    replaced under the same name); the response cache puts this in its keys."""

    def fingerprint(self, model: str) -> str | None: ...


@runtime_checkable
class Completing(Protocol):
    """A provider that serves legacy text completions (`Capability.COMPLETIONS`): a raw prompt,
    and fill-in-the-middle with a `suffix` for the models that declare `Capability.INSERT`.
    Answers are `text_completion` responses and chunks (choices carry `text`)."""

    async def complete(self, req: CompletionRequest) -> ChatResponse: ...

    def stream_complete(self, req: CompletionRequest) -> AsyncIterator[ChatChunk]: ...


@runtime_checkable
class Reranking(Protocol):
    """A provider that scores documents against a query (/v1/rerank): a local cross-encoder, or an
    upstream with a rerank endpoint. Its results carry `index` and `relevance_score`; the pipeline
    sorts and cuts them (`aigw.reranking.conform`)."""

    async def rerank(self, req: RerankRequest) -> RerankResponse: ...
