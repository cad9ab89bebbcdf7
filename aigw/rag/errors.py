"""Errors of the RAG layer, in aigw's one exception tree (`aigw.errors`).

    AigwError
    ├── RagUnavailable           503  a RAG dependency is missing (names the pip command)
    ├── EmbedderUnavailable      404  ModelNotFound: the embedding model cannot be loaded locally
    ├── CollectionNotFound       404  (or not this caller's to see; names the ones it may use)
    ├── CollectionForbidden      403  another key's collection, which this caller may only read
    └── EmbeddingModelMismatch   409  a collection holds vectors of another model (names both)

Bad arguments (a folder that does not exist, a vector of the wrong dimension) raise
`aigw.errors.InvalidRequest`.
"""

from __future__ import annotations

from collections.abc import Sequence

from aigw.errors import AigwError, ModelNotFound, PermissionDenied, quoted


class RagUnavailable(AigwError):
    """A package RAG needs is not installed, or SQLite cannot load the sqlite-vec extension."""

    status_code = 503
    error_type = "service_unavailable"
    code = "rag_unavailable"


class EmbedderUnavailable(ModelNotFound):
    """The embedding model is neither bundled nor in the local Hugging Face cache (or failed to load)."""


class CollectionNotFound(AigwError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "collection_not_found"

    def __init__(self, name: str | None, known: Sequence[str] | None = None) -> None:
        """`name` None: no collection was named, and there is none to choose."""
        message = f"no RAG collection named {quoted(name)}" if name is not None else "no RAG collection"
        if known is not None:
            shown = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "")
            message += (
                f"; collections: {shown}" if known else "; there are none yet (aigw rag index DIR makes one)"
            )
        super().__init__(message, param="collection")
        self.name = name


class CollectionForbidden(PermissionDenied):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"RAG collection {quoted(name)} belongs to another API key: this key may not change it",
            param="collection",
        )
        self.name = name


class EmbeddingModelMismatch(AigwError):
    """Vectors of two embedding models never share a collection: their spaces are unrelated."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "embedding_model_mismatch"

    def __init__(
        self,
        collection: str,
        stored_model: str,
        stored_dim: int,
        requested_model: str,
        requested_dim: int | None,
    ) -> None:
        wanted = requested_model if requested_dim is None else f"{requested_model} ({requested_dim} dims)"
        super().__init__(
            f"collection {collection!r} was indexed with {stored_model} ({stored_dim} dims) and cannot take "
            f"vectors from {wanted}: use that model, another collection, or drop this one first",
            param="model",
        )
        self.collection = collection
        self.stored_model = stored_model
        self.requested_model = requested_model
