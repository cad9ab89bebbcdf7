"""The `anthropic` provider: Claude through the Anthropic Messages API.

Translation lives in `anthropic_wire` (pure); this module only does I/O through HttpTransport.
The API key comes from the provider's config (`api_key` or `api_key_env`), else from
ANTHROPIC_API_KEY or CLAUDE_API_KEY.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any
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
from aigw.errors import CapabilityError, UpstreamProtocolError
from aigw.providers.anthropic.stream import StreamTranslator
from aigw.providers.anthropic.wire import (
    error_from_body,
    models_from_wire,
    request_to_wire,
    response_from_wire,
)
from aigw.providers.http import HttpTransport, json_event
from aigw.providers.openai.wire import parse_retry_after
from aigw.providers.remote import Connection, HttpProviderConfig

MAX_MODEL_PAGES = 10
_CAPS = frozenset(
    {
        Capability.CHAT,
        Capability.STREAM,
        Capability.TOOLS,
        Capability.JSON_MODE,
        Capability.JSON_SCHEMA,
        Capability.VISION,
    }
)


class AnthropicProvider:
    capabilities = _CAPS

    def __init__(self, name: str, config: HttpProviderConfig, connection: Connection) -> None:
        self.name = name
        self._cfg = config
        self._http = HttpTransport(
            name,
            connection,
            config,
            lambda status, body, hdrs: error_from_body(
                name, status, body, parse_retry_after(hdrs.get("retry-after"))
            ),
        )

    def capabilities_for(self, model: str) -> frozenset[Capability]:
        return self.capabilities

    def listing_contacts_upstream(self) -> bool:
        return self._cfg.discover_models

    async def list_models(self) -> list[ModelInfo]:
        found: dict[str, ModelInfo] = {m: ModelInfo(m, self.name) for m in self._cfg.models}
        if self._cfg.discover_models:
            path = "/models?limit=1000"
            for _ in range(MAX_MODEL_PAGES):
                page, after = models_from_wire(self.name, await self._http.call_json("GET", path))
                for m in page:
                    found.setdefault(m.id, m)
                if after is None:
                    break
                path = f"/models?limit=1000&after_id={quote(after, safe='')}"
        return list(found.values())

    async def chat(self, req: ChatRequest) -> ChatResponse:
        if (native := _passed_through(req)) is not None:
            body, headers = native
            data = await self._http.call_json("POST", "/messages", body, headers)
            resp = response_from_wire(self.name, data, None, int(time.time()))
            resp.native = data
            return resp
        wire = request_to_wire(req)
        data = await self._http.call_json("POST", "/messages", wire.body)
        return response_from_wire(self.name, data, wire.json_tool, int(time.time()))

    async def count_tokens(self, req: ChatRequest) -> int:
        """Anthropic's own count (POST /messages/count_tokens), free of charge upstream."""
        native = _passed_through(req)
        body, headers = native if native is not None else (request_to_wire(req).body, {})
        fields = ("model", "messages", "system", "tools", "tool_choice", "thinking")
        data = await self._http.call_json(
            "POST", "/messages/count_tokens", {k: v for k, v in body.items() if k in fields}, headers
        )
        tokens = data.get("input_tokens")
        if not isinstance(tokens, int):
            raise UpstreamProtocolError(f"{self.name}: no input_tokens in its count", provider=self.name)
        return tokens

    async def stream_chat(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        native = _passed_through(req)
        if native is not None:
            body, headers = native
            json_tool = None
        else:
            wire = request_to_wire(req)
            body, headers, json_tool = wire.body, {}, wire.json_tool
        translator = StreamTranslator(self.name, json_tool, int(time.time()))
        pending = b""  # a passed-through stream's events not yet attached to a chunk
        async with aclosing(self._http.events("/messages", {**body, "stream": True}, headers)) as events:
            async for ev in events:
                if not ev.data.strip():
                    continue
                if native is not None:
                    pending += b"event: " + ev.event.encode() + b"\ndata: " + ev.data.encode() + b"\n\n"
                for chunk in translator.feed(json_event(self.name, ev.data)):
                    if pending:
                        chunk.native, pending = pending, b""
                    yield chunk
                if translator.done:
                    return
        raise UpstreamProtocolError(f"{self.name}: stream ended early (no message_stop)", provider=self.name)

    async def embed(self, req: EmbedRequest) -> EmbedResponse:
        raise CapabilityError(f"{self.name}: Anthropic has no embeddings API", param="model")

    async def aclose(self) -> None:
        await self._http.aclose()



def _passed_through(req: ChatRequest) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The client's own Messages request (for this target's model) and the headers to forward,
    when it came in Anthropic's dialect: sent unchanged, thinking, cache_control, server tools
    and unknown fields included."""
    native = req.native
    if native is None or native.dialect != "anthropic":
        return None
    return {**native.body, "model": req.model}, dict(native.headers)
