"""The `openai` provider: any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, llama-server, LM Studio).

Request bodies pass through unchanged apart from `model` (and, for streams, a request for the
usage chunk); one pooled aiohttp session per provider carries every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson
from yarl import URL

from aigw.config import DEFAULT_OPENAI_BASE_URL, ProviderConfig, redact_url
from aigw.domain import ChatChunk, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, ModelInfo
from aigw.errors import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from aigw.providers.base import Capability, ProviderContext
from aigw.providers.openai_wire import (
    chunk_from_wire,
    error_from_body,
    models_from_wire,
    parse_retry_after,
    response_from_wire,
    usage_from_wire,
)
from aigw.providers.sse import SSEParser

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
    }
)
_RESPONSE_KEYS = frozenset({"id", "object", "created", "model", "choices", "usage"})


def _describe(e: aiohttp.ClientError) -> str:
    """What went wrong, without echoing URLs (which may carry credentials) back to clients."""
    if isinstance(e, aiohttp.ClientConnectorError):
        return e.os_error.strerror or type(e.os_error).__name__
    if isinstance(e, aiohttp.ClientResponseError | aiohttp.InvalidURL):
        return type(e).__name__
    return str(e) or type(e).__name__


# The end-of-stream marker: a sentinel chunk compared by identity.
_DONE = ChatChunk(id="", created=0, model="", choices=[])


class OpenAICompatProvider:
    capabilities = _CAPS

    def __init__(self, name: str, config: ProviderConfig, environ: Mapping[str, str]) -> None:
        self.name = name
        self._cfg = config
        self._base = (config.base_url or DEFAULT_OPENAI_BASE_URL).rstrip("/")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = config.api_key_value(environ)
        if key is not None:
            headers["Authorization"] = f"Bearer {key.get_secret_value()}"
        for k, v in config.headers.items():
            headers[k] = v.get_secret_value()
        self._headers = headers
        self._timeout = aiohttp.ClientTimeout(
            total=config.total_timeout_s,
            connect=config.connect_timeout_s,
            sock_read=config.first_byte_timeout_s,
        )
        self._stream_timeout = aiohttp.ClientTimeout(
            total=config.total_timeout_s, connect=config.connect_timeout_s, sock_read=config.read_timeout_s
        )
        self._urls: dict[str, URL] = {}
        self._session: aiohttp.ClientSession | None = None

    def capabilities_for(self, model: str) -> frozenset[Capability]:
        return self.capabilities

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._cfg.max_connections, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers=self._headers,
                raise_for_status=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    def _url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self._base + path)
        return url

    async def _send(
        self, method: str, path: str, body: dict[str, Any] | None, *, stream: bool = False
    ) -> aiohttp.ClientResponse:
        """Send a request; return the response once its headers arrived with a 2xx status.

        Non-streaming calls rely on the session's timeouts (sock_read = first-byte timeout, since
        the whole answer arrives at once); streams bound the wait for headers separately and then
        allow `read_timeout_s` between chunks.
        """
        session = self._get_session()
        data = None if body is None else orjson.dumps(body)
        try:
            if stream:
                async with asyncio.timeout(self._cfg.first_byte_timeout_s):
                    resp = await session.request(
                        method, self._url(path), data=data, timeout=self._stream_timeout
                    )
            else:
                resp = await session.request(method, self._url(path), data=data)
        except TimeoutError:
            raise UpstreamTimeout(
                f"{self.name}: no response within {self._cfg.first_byte_timeout_s:g} s", provider=self.name
            ) from None
        except aiohttp.ClientError as e:
            raise UpstreamConnectError(
                f"{self.name}: cannot reach {redact_url(self._base)}: {_describe(e)}", provider=self.name
            ) from None
        if resp.status >= 400:
            try:
                payload = await self._read(resp)
            finally:
                resp.release()
            raise error_from_body(
                self.name, resp.status, payload, parse_retry_after(resp.headers.get("Retry-After"))
            )
        return resp

    def _broken(self, e: Exception, timed_out: str, lost: str) -> UpstreamTimeout | UpstreamConnectError:
        """A transfer that failed after the response began: a timeout, or a lost connection."""
        if isinstance(e, TimeoutError):
            return UpstreamTimeout(f"{self.name}: {timed_out}", provider=self.name)
        detail = _describe(e) if isinstance(e, aiohttp.ClientError) else type(e).__name__
        return UpstreamConnectError(f"{self.name}: {lost}: {detail}", provider=self.name)

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        try:
            return await resp.read()
        except (TimeoutError, aiohttp.ClientError) as e:
            raise self._broken(e, "response timed out", "connection lost") from None

    async def _call_json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = await self._send(method, path, body)
        try:
            payload = await self._read(resp)
        finally:
            resp.release()
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(f"{self.name}: response is not JSON", provider=self.name) from None
        if not isinstance(data, dict):
            raise UpstreamProtocolError(f"{self.name}: response is not a JSON object", provider=self.name)
        return data

    async def list_models(self) -> list[ModelInfo]:
        found: dict[str, ModelInfo] = {m: ModelInfo(m, self.name) for m in self._cfg.model_names()}
        if self._cfg.discover_models:
            for m in models_from_wire(self.name, await self._call_json("GET", "/models")):
                found.setdefault(m.id, m)
        return list(found.values())

    def _body(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        out = dict(body)
        out["model"] = model
        return out

    async def chat(self, req: ChatRequest) -> ChatResponse:
        data = await self._call_json("POST", "/chat/completions", self._body(req.body, req.model))
        return response_from_wire(self.name, data)

    async def stream_chat(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        body = self._body(req.body, req.model)
        body["stream"] = True
        if self._cfg.stream_usage:
            opts = body.get("stream_options")
            body["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
        resp = await self._send("POST", "/chat/completions", body, stream=True)
        parser = SSEParser()
        finished = False
        try:
            async for raw in resp.content.iter_any():
                for ev in parser.feed(raw):
                    if (chunk := self._decode_event(ev.data)) is _DONE:
                        return
                    if chunk is not None:
                        finished = finished or any(c.get("finish_reason") for c in chunk.choices)
                        yield chunk
            for ev in parser.close():
                if (chunk := self._decode_event(ev.data)) is _DONE:
                    return
                if chunk is not None:
                    yield chunk
        except (TimeoutError, aiohttp.ClientError) as e:
            raise self._broken(e, "stream stalled", "stream broke") from None
        finally:
            resp.release()
        if not finished:
            raise UpstreamProtocolError(f"{self.name}: stream ended without [DONE]", provider=self.name)
        # Some servers omit [DONE] after the final chunk; a finish_reason was seen, so it ended well.

    def _decode_event(self, data: str) -> ChatChunk | None:
        """A chunk, `_DONE` at the end marker, or None for an event without data."""
        data = data.strip()
        if not data:
            return None
        if data == "[DONE]":
            return _DONE
        try:
            d = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                f"{self.name}: stream event is not JSON", provider=self.name
            ) from None
        if not isinstance(d, dict):
            raise UpstreamProtocolError(f"{self.name}: stream event is not an object", provider=self.name)
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
        if self._session is not None:
            await self._session.close()
            self._session = None


def create_provider(name: str, config: ProviderConfig, ctx: ProviderContext) -> OpenAICompatProvider:
    return OpenAICompatProvider(name, config, ctx.environ)
