"""An embedding model as a RAG `Embedder` whose vectors come through the gateway's pipeline.

Every embedding a RAG operation makes (indexing, a search's question) goes through `via`: the
gateway's pipeline on the caller's account, so it is admitted, limited, charged and logged like
any /v1/embeddings request of that caller. That holds for the daemon's own model too: its
embeddings run on the RAG service's embedding thread, its tokenizer sizes the chunks (`sizing`).
A provider's model has no tokenizer here: about four characters a token, which only sizes chunks.

The RAG worker thread is synchronous; the pipeline is async on the event loop. `embed` hands each
batch to the loop and waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from aigw.errors import UpstreamProtocolError

if TYPE_CHECKING:
    from aigw.rag.embed import Embedder, FloatArray

EmbedCall = Callable[[str, list[str]], Awaitable[list[list[float]]]]
"""(model, texts) -> one vector per text, on some caller's account."""
MAX_TOKENS = 512  # a chunk budget every embedding API accepts
BATCH = 96


class RoutedEmbedder:
    def __init__(
        self,
        name: str,
        via: EmbedCall,
        loop: asyncio.AbstractEventLoop,
        timeout_s: float,
        *,
        call_as: str | None = None,
        sizing: Embedder | None = None,
    ) -> None:
        """`name`: what collections record; `call_as`: the model name the pipeline is asked for
        (default `name`); `sizing`: the local model whose dimension and tokenizer apply."""
        self._name = name
        self._call_as = call_as or name
        self._via = via
        self._loop = loop
        self._timeout_s = timeout_s
        self._sizing = sizing
        self._dimension: int | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        if self._sizing is not None:
            return self._sizing.dimension
        if self._dimension is None:
            self.embed(["dimension probe"])
        assert self._dimension is not None
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return self._sizing.max_tokens if self._sizing is not None else MAX_TOKENS

    def count_tokens(self, text: str) -> int:
        if self._sizing is not None:
            return self._sizing.count_tokens(text)
        return max(1, -(-len(text) // 4))

    def embed(self, texts: Sequence[str]) -> FloatArray:
        import numpy as np

        if not texts:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        rows: list[list[float]] = []
        step = len(texts) if self._sizing is not None else BATCH  # the local model takes any batch
        for i in range(0, len(texts), max(step, 1)):
            batch = list(texts[i : i + step])
            coro = self._via(self._call_as, batch)
            got: list[list[float]] = asyncio.run_coroutine_threadsafe(_await(coro), self._loop).result(
                self._timeout_s
            )
            if len(got) != len(batch):
                raise UpstreamProtocolError(
                    f"{self._name} returned {len(got)} embeddings for {len(batch)} texts", provider=self._name
                )
            rows.extend(got)
        vectors = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
        if vectors.shape[0] and self._dimension is None:
            self._dimension = int(vectors.shape[1])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        out: FloatArray = (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)
        return out


async def _await(call: Awaitable[list[list[float]]]) -> list[list[float]]:
    return await call
