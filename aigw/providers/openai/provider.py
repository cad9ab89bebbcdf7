"""The `openai` provider: any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, llama-server, LM Studio).

Request bodies pass through unchanged apart from `model` (and, for streams, a request for the
usage chunk); one pooled aiohttp session per provider carries every call.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson
from yarl import URL

from aigw.completion import CompletionRequest
from aigw.domain import (
    TEXT_COMPLETION,
    Capability,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    ModelInfo,
)
from aigw.errors import UpstreamProtocolError
from aigw.providers.http import HttpTransport, json_event
from aigw.providers.openai.config import OpenAIConfig
from aigw.providers.openai.rerank import rerank_body, rerank_from_wire
from aigw.providers.openai.responses import EventTranslator, response_to_chat
from aigw.providers.openai.wire import (
    chunk_from_wire,
    error_from_body,
    models_from_wire,
    parse_retry_after,
    response_from_wire,
    usage_from_wire,
)
from aigw.providers.remote import Connection
from aigw.reranking import RerankRequest, RerankResponse

_CAPS = frozenset(
    {
        Capability.CHAT,
        Capability.STREAM,
        Capability.EMBED,
        Capability.TOOLS,
        Capability.JSON_MODE,
        Capability.JSON_SCHEMA,
        Capability.VISION,
        Capability.LOGPROBS,
        Capability.COMPLETIONS,
        Capability.INSERT,
    }
)
_RESPONSE_KEYS = frozenset({"id", "object", "created", "model", "choices", "usage"})


# The end-of-stream marker: a sentinel chunk compared by identity.
_DONE = ChatChunk(id="", created=0, model="", choices=[])


class OpenAICompatProvider:
    capabilities = _CAPS

    def __init__(self, name: str, config: OpenAIConfig, connection: Connection) -> None:
        self.name = name
        self._cfg = config
        host = URL(connection.base_url).host
        known = config.responses_api
        self._responses = known if known is not None else host == "api.openai.com"
        self._http = HttpTransport(
            name,
            connection,
            config,
            lambda status, body, hdrs: error_from_body(
                name, status, body, parse_retry_after(hdrs.get("Retry-After"))
            ),
        )
        if host != "api.openai.com":  # OpenAI's own API has no /rerank; vLLM, llama-server, Jina, Cohere do
            self.capabilities = self.capabilities | {Capability.RERANK}

    def capabilities_for(self, model: str) -> frozenset[Capability]:
        return self.capabilities

    async def _call_json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._http.call_json(method, path, body)

    def listing_contacts_upstream(self) -> bool:
        return self._cfg.discover_models

    async def list_models(self) -> list[ModelInfo]:
        found: dict[str, ModelInfo] = {m: ModelInfo(m, self.name) for m in self._cfg.models}
        if self._cfg.discover_models:
            for m in models_from_wire(self.name, await self._call_json("GET", "/models")):
                found.setdefault(m.id, m)
        return list(found.values())

    def _body(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        out = dict(body)
        out["model"] = model
        return out

    def _passed_through(self, req: ChatRequest) -> dict[str, Any] | None:
        """The client's own Responses request for this model, when it is one and the upstream
        serves that API: sent unchanged (built-in tools, reasoning, include, ... all kept)."""
        native = req.native
        if native is None or native.dialect != "responses" or not self._responses:
            return None
        return {**native.body, "model": req.model}

    async def chat(self, req: ChatRequest) -> ChatResponse:
        if (native := self._passed_through(req)) is not None:
            data = await self._call_json("POST", "/responses", {**native, "stream": False})
            resp = response_to_chat(self.name, data, int(time.time()))
            resp.native = data
            return resp
        data = await self._call_json("POST", "/chat/completions", self._body(req.body, req.model))
        return response_from_wire(self.name, data)

    async def _relay_responses(self, body: dict[str, Any]) -> AsyncIterator[ChatChunk]:
        translator = EventTranslator(self.name, int(time.time()))
        pending = b""
        async with aclosing(self._http.events("/responses", {**body, "stream": True})) as events:
            async for ev in events:
                if not ev.data.strip():
                    continue
                pending += b"event: " + ev.event.encode() + b"\ndata: " + ev.data.encode() + b"\n\n"
                for chunk in translator.feed(json_event(self.name, ev.data)):
                    chunk.native, pending = pending, b""
                    yield chunk
                if translator.done:
                    return
        raise UpstreamProtocolError(
            f"{self.name}: stream ended before the response completed", provider=self.name
        )

    def stream_chat(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The stream (nothing is sent until its first item is asked for)."""
        if (native := self._passed_through(req)) is not None:
            return self._relay_responses(native)
        return self._stream("/chat/completions", req.body, req.model)

    async def _stream(self, path: str, client_body: dict[str, Any], model: str) -> AsyncIterator[ChatChunk]:
        body = self._body(client_body, model)
        body["stream"] = True
        if self._cfg.stream_usage:
            opts = body.get("stream_options")
            body["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
        finished = False
        async with aclosing(self._http.events(path, body)) as events:
            async for ev in events:
                if (chunk := self._decode_event(ev.data)) is _DONE:
                    return
                if chunk is not None:
                    finished = finished or any(c.get("finish_reason") for c in chunk.choices)
                    yield chunk
        if not finished:
            raise UpstreamProtocolError(f"{self.name}: stream ended without [DONE]", provider=self.name)
        # Some servers omit [DONE] after the final chunk; a finish_reason was seen, so it ended well.

    async def complete(self, req: CompletionRequest) -> ChatResponse:
        """A legacy completion, passed through to the upstream's /completions."""
        data = await self._call_json("POST", "/completions", self._body(req.body, req.model))
        answer = response_from_wire(self.name, data)
        answer.object = TEXT_COMPLETION
        return answer

    async def stream_complete(self, req: CompletionRequest) -> AsyncIterator[ChatChunk]:
        async for chunk in self._stream("/completions", req.body, req.model):
            chunk.object = TEXT_COMPLETION
            yield chunk

    def _decode_event(self, data: str) -> ChatChunk | None:
        """A chunk, `_DONE` at the end marker, or None for an event without data."""
        data = data.strip()
        if not data:
            return None
        if data == "[DONE]":
            return _DONE
        d = json_event(self.name, data)
        if "error" in d:
            raise error_from_body(self.name, 502, orjson.dumps(d), None)
        return chunk_from_wire(self.name, d)

    async def embed(self, req: EmbedRequest) -> EmbedResponse:
        data = await self._call_json("POST", "/embeddings", self._body(req.body, req.model))
        items = data.get("data")
        if not isinstance(items, list):
            raise UpstreamProtocolError(f"{self.name}: embeddings response has no data", provider=self.name)
        usage = usage_from_wire(self.name, data.get("usage"))
        return EmbedResponse(model=str(data.get("model") or req.model), data=items, usage=usage)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def rerank(self, req: RerankRequest) -> RerankResponse:
        """POST {base_url}/rerank (vLLM, llama-server, Jina, Cohere v2), the answer normalised."""
        data = await self._call_json("POST", "/rerank", rerank_body(req))
        return rerank_from_wire(self.name, data, req)
