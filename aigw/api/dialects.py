"""Which API dialect a path speaks: the usage log records it with every request."""

from __future__ import annotations

_PREFIXES = (
    (("/v1/messages", "/messages"), "anthropic"),
    (("/v1/responses", "/responses"), "responses"),
    (("/v1/rag/", "/rag/"), "rag"),
    (("/api/",), "ollama"),
)


def dialect_of(path: str) -> str:
    """anthropic, responses, rag, ollama or openai (everything else: chat, embeddings, models)."""
    for prefixes, name in _PREFIXES:
        if path.startswith(prefixes):
            return name
    return "openai"
