"""The `gemini` provider: Google's Generative Language API (generateContent and friends).

Translation lives in `gemini_wire` (pure); this class only does I/O through `HttpTransport`.
Model names become one URL path segment, percent-quoted, so no name can change the path.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from urllib.parse import quote

from aigw.domain import (
    Capability,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    ModelInfo,
)
from aigw.errors import InvalidRequest
from aigw.providers.gemini.wire import (
    StreamTranslator,
    chat_request_to_gemini,
    embed_request_to_gemini,
    embed_response_from_gemini,
    error_from_gemini,
    models_from_gemini,
    response_from_gemini,
)
from aigw.providers.http import HttpTransport, json_event
from aigw.providers.remote import Connection, HttpProviderConfig

MAX_MODEL_PAGES = 20

_CAPS = frozenset(
    {
        Capability.CHAT,
        Capability.STREAM,
        Capability.EMBED,
        Capability.TOOLS,
        Capability.JSON_MODE,
        Capability.JSON_SCHEMA,
        Capability.VISION,
    }
)


def model_path(model: str, method: str) -> str:
    """`/models/{model}:{method}` with the model quoted as a single path segment."""
    name = model.removeprefix("models/")
    if not name:
        raise InvalidRequest("the model name is empty", param="model")
    return f"/models/{quote(name, safe='')}:{method}"


class GeminiProvider:
    capabilities = _CAPS

    def __init__(self, name: str, config: HttpProviderConfig, connection: Connection) -> None:
        self.name = name
        self._cfg = config
        self._http = HttpTransport(
            name,
            connection,
            config,
            lambda status, body, hdrs: error_from_gemini(name, status, body, hdrs.get("Retry-After")),
        )

    def capabilities_for(self, model: str) -> frozenset[Capability]:
        return self.capabilities

    def listing_contacts_upstream(self) -> bool:
        return self._cfg.discover_models

    async def list_models(self) -> list[ModelInfo]:
        found: dict[str, ModelInfo] = {m: ModelInfo(m, self.name) for m in self._cfg.models}
        if not self._cfg.discover_models:
            return list(found.values())
        token: str | None = None
        for _ in range(MAX_MODEL_PAGES):
            path = "/models?pageSize=1000"
            if token is not None:
                path += f"&pageToken={quote(token, safe='')}"
            models, token = models_from_gemini(self.name, await self._http.call_json("GET", path))
            for m in models:
                found.setdefault(m.id, m)
            if token is None:
                break
        return list(found.values())

    async def chat(self, req: ChatRequest) -> ChatResponse:
        body = chat_request_to_gemini(self.name, req.body, req.hint)
        data = await self._http.call_json("POST", model_path(req.model, "generateContent"), body)
        return response_from_gemini(self.name, req.model, data, created=int(time.time()))

    async def stream_chat(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        body = chat_request_to_gemini(self.name, req.body, req.hint)
        path = model_path(req.model, "streamGenerateContent") + "?alt=sse"
        translator = StreamTranslator(self.name, req.model, created=int(time.time()))
        async with aclosing(self._http.events(path, body)) as events:
            async for ev in events:
                if data := ev.data.strip():
                    for chunk in translator.feed(json_event(self.name, data)):
                        yield chunk
        for chunk in translator.finish():
            yield chunk

    async def embed(self, req: EmbedRequest) -> EmbedResponse:
        body = embed_request_to_gemini(self.name, req.model.removeprefix("models/"), req.body)
        data = await self._http.call_json("POST", model_path(req.model, "batchEmbedContents"), body)
        return embed_response_from_gemini(self.name, req.model, req.body, data)

    async def aclose(self) -> None:
        await self._http.aclose()

