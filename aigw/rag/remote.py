"""A configured provider's embedding model (OpenAI, Gemini, a local GGUF embedder, ...) as a RAG
`Embedder`, for collections made with `--model provider/model`.

The RAG worker thread is synchronous; the gateway's router is async on the event loop. `embed`
hands the call to the loop and waits for it, so the vectors come through the same routing,
retries and fallback as any /v1/embeddings request. Tokens are counted as about four characters
each (the provider's tokenizer is not here), which only sizes chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from aigw.errors import UpstreamProtocolError

if TYPE_CHECKING:
    from aigw.rag.embed import FloatArray

EmbedCall = Callable[[str, list[str]], Awaitable[list[list[float]]]]
MAX_TOKENS = 512  # a chunk budget every embedding API accepts
BATCH = 96


class RemoteEmbedder:
    def __init__(self, name: str, call: EmbedCall, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self._name = name
        self._call = call
        self._loop = loop
        self._timeout_s = timeout_s
        self._dimension: int | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self.embed(["dimension probe"])
        assert self._dimension is not None
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return MAX_TOKENS

    def count_tokens(self, text: str) -> int:
        return max(1, -(-len(text) // 4))

    def embed(self, texts: Sequence[str]) -> FloatArray:
        import numpy as np

        rows: list[list[float]] = []
        for i in range(0, len(texts), BATCH):
            batch = list(texts[i : i + BATCH])
            coro = self._call(self._name, batch)
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
