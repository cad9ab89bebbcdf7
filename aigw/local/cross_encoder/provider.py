"""Local cross-encoders behind the Provider seam: they rerank, and refuse everything else.

Each model loads on its first request, off the event loop (torch and sentence-transformers are
imported then, not before), and stays loaded until the daemon stops; it is not under the local
engine's memory budget or keep-alive. One request at a time runs per model (torch already uses
every core for one batch): the others wait their turn on the event loop.

A request honours exactly the fields in `HONOURED`; anything else (Cohere's `max_tokens_per_doc`,
`rank_fields`, ...) is refused with a 400 naming it. `relevance_score` is the sigmoid of the
model's one logit, in 0..1 as Cohere and Jina give it, whatever activation the model's own
config names. Pairs longer than the model's maximum sequence length are truncated, as
sentence-transformers does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigw.domain import (
    Capability,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    ModelInfo,
)
from aigw.engine.slot import LocalModelError
from aigw.errors import CapabilityError, ModelNotFound, quoted
from aigw.local.cross_encoder.config import is_model_dir
from aigw.local.fingerprint import Fingerprints
from aigw.reranking import RerankRequest, RerankResponse, new_id, read_tokens

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

HONOURED = frozenset({"model", "query", "documents", "top_n", "return_documents", "user"})
CAPS = frozenset({Capability.RERANK})

Loader = Callable[[Path], "CrossEncoder"]


def load_cross_encoder(path: Path) -> CrossEncoder:
    """A model directory as a CrossEncoder on the CPU, never from the Hub."""
    from sentence_transformers import CrossEncoder

    from aigw.rag.embed import quiet_progress_bars

    quiet_progress_bars()
    model: CrossEncoder = CrossEncoder(str(path), device="cpu", local_files_only=True)
    return model


class Scorer:
    """One cross-encoder: loaded when first needed, one scoring at a time."""

    def __init__(self, key: str, path: Path, batch_size: int, loader: Loader) -> None:
        self.key = key
        self.path = path
        self._batch_size = batch_size
        self._loader = loader
        self._model: CrossEncoder | None = None
        self._turn = asyncio.Lock()
        """Requests wait here, on the event loop, rather than each holding a worker thread."""
        self._running = threading.Lock()
        """And in the thread: a request cancelled while its thread runs must not overlap the next."""

    @property
    def loaded(self) -> bool:
        return self._model is not None

    async def score(self, query: str, documents: Sequence[str]) -> tuple[list[float], int]:
        """Each document's relevance to the query (0..1), and the tokens read."""
        async with self._turn:
            return await asyncio.to_thread(self._score, query, documents)

    def _score(self, query: str, documents: Sequence[str]) -> tuple[list[float], int]:
        with self._running:
            model = self._model if self._model is not None else self._load()
            import torch

            pairs = [(query, d) for d in documents]
            scores = model.predict(
                pairs,
                batch_size=self._batch_size,
                show_progress_bar=False,
                activation_fn=torch.nn.Sigmoid(),
                convert_to_numpy=True,
            )
            return [float(s) for s in scores], _tokens(model, query, documents)

    def _load(self) -> CrossEncoder:
        if not is_model_dir(self.path):
            raise LocalModelError(
                f"{self.key}: {self.path} is not a model directory (no config.json)", provider=self.key
            )
        try:
            model = self._loader(self.path)
        except ImportError:
            from aigw.extras import install_hint

            raise LocalModelError(
                f"{self.key}: cross-encoders need sentence-transformers: {install_hint('rag')}",
                provider=self.key,
            ) from None
        except Exception as e:  # sentence-transformers raises OSError, ValueError, ...
            raise LocalModelError(
                f"{self.key}: cannot load {self.path}: {type(e).__name__}: {str(e)[:300]}", provider=self.key
            ) from None
        if model.num_labels != 1:
            raise LocalModelError(
                f"{self.key}: the model has {model.num_labels} labels; a reranker scores with one",
                provider=self.key,
            )
        self._model = model
        return model

    def unload(self) -> None:
        with self._running:
            self._model = None


def _tokens(model: CrossEncoder, query: str, documents: Sequence[str]) -> int:
    """The tokens the model read: every (query, document) pair as it was truncated."""
    limit: Any = getattr(model, "max_seq_length", None)
    encoded = model.tokenizer([query] * len(documents), list(documents), truncation=True, max_length=limit)
    return sum(len(ids) for ids in encoded["input_ids"])


class CrossEncoderProvider:
    def __init__(
        self,
        name: str,
        models: Mapping[str, Path],
        batch_size: int = 32,
        *,
        loader: Loader = load_cross_encoder,
    ) -> None:
        self.name = name
        self.capabilities = CAPS
        self._scorers = {m: Scorer(f"{name}/{m}", p, batch_size, loader) for m, p in models.items()}
        self._fingerprints = Fingerprints()

    def capabilities_for(self, model: str) -> frozenset[Capability]:
        return self.capabilities

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(m, self.name) for m in self._scorers]

    def fingerprint(self, model: str) -> str | None:
        """The weights' identity, for the response cache's keys."""
        scorer = self._scorers.get(model)
        return None if scorer is None else self._fingerprints.of(scorer.path)

    def _refuse(self, model: str, what: str) -> CapabilityError:
        return CapabilityError(f"{quoted(model)} is a reranker: it cannot {what}", param="model")

    async def chat(self, req: ChatRequest) -> ChatResponse:
        raise self._refuse(req.model, "chat")

    async def stream_chat(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise self._refuse(req.model, "chat")
        yield  # pragma: no cover  (makes this an async generator)

    async def embed(self, req: EmbedRequest) -> EmbedResponse:
        raise self._refuse(req.model, "embed")

    async def rerank(self, req: RerankRequest) -> RerankResponse:
        scorer = self._scorers.get(req.model)
        if scorer is None:
            raise ModelNotFound(f"{self.name} serves no model {quoted(req.model)}", param="model")
        for key in req.body:
            if key not in HONOURED:
                raise CapabilityError(
                    f"Local reranker {quoted(req.model)} does not support {quoted(key)}", param=key[:100]
                )
        scores, tokens = await scorer.score(req.query, req.documents)
        results = [{"index": i, "relevance_score": s} for i, s in enumerate(scores)]
        # sorted, cut to top_n and given their documents by the pipeline (aigw.reranking.conform)
        return RerankResponse(new_id(), req.model, results, read_tokens(tokens))

    async def aclose(self) -> None:
        for scorer in self._scorers.values():
            await asyncio.to_thread(scorer.unload)
