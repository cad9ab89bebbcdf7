"""Which API dialect a path speaks (the usage log records it with every request), and which GenAI
operation it asks for (telemetry names a refused request's span by it)."""

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


_OPERATIONS = {
    "/chat/completions": "chat",
    "/messages": "chat",
    "/responses": "chat",
    "/api/chat": "chat",
    "/completions": "text_completion",
    "/api/generate": "text_completion",
    "/embeddings": "embeddings",
    "/api/embed": "embeddings",
    "/api/embeddings": "embeddings",
    "/rerank": "rerank",
}


def operation_of(path: str) -> str | None:
    """The gen_ai.operation.name of a request to `path` (None: no GenAI operation, e.g. /admin)."""
    return _OPERATIONS.get(path[3:] if path.startswith("/v1/") else path)
