"""Where the dashboard gets its data: the daemon over HTTP (async httpx), with the admin token
read from AIGW_HOME. A `Source` protocol keeps the app testable with canned data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson


class DaemonDown(Exception):
    """Nothing answers at the daemon's URL."""


class SourceError(Exception):
    """The daemon answered with an error (the message is one line)."""


class Source(Protocol):
    url: str

    async def stats(self) -> dict[str, Any]: ...

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def chat(self, model: str, messages: list[dict[str, Any]], rag: str | None) -> AsyncIterator[str]: ...

    async def start_daemon(self) -> None: ...


def _message(resp: httpx.Response) -> str:
    try:
        return str(resp.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {resp.status_code}"


class DaemonSource:
    """`admin_token`: the token itself, or the file the daemon keeps it in (read when needed: a
    daemon started from the dashboard makes it at its first start)."""

    def __init__(self, url: str, admin_token: str | Path | None, start: Any = None) -> None:
        self.url = url
        self._token = admin_token
        self._http = httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(5.0, read=600.0), trust_env=False)
        self._start = start

    @property
    def _headers(self) -> dict[str, str]:
        token = self._token
        if isinstance(token, Path):
            try:
                token = token.read_text(encoding="utf-8").strip() or None
            except OSError:
                token = None
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            resp = await self._http.request(method, path, json=body, headers=self._headers)
        except httpx.ConnectError:
            raise DaemonDown(self.url) from None
        except httpx.HTTPError as e:
            raise SourceError(f"{type(e).__name__} from {self.url}") from None
        if resp.status_code >= 400:
            raise SourceError(_message(resp))
        data: dict[str, Any] = resp.json()
        return data

    async def stats(self) -> dict[str, Any]:
        return await self._call("GET", "/admin/stats")

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", path, body)

    async def chat(self, model: str, messages: list[dict[str, Any]], rag: str | None) -> AsyncIterator[str]:
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
        path = "/v1/chat/completions"
        if rag:
            path, body["collection"] = "/v1/rag/query", rag
        try:
            async with self._http.stream("POST", path, json=body, headers=self._headers) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    raise SourceError(_message(resp))
                async for line in resp.aiter_lines():
                    if not line.startswith("data:") or line.strip() == "data: [DONE]":
                        continue
                    event = orjson.loads(line[5:])
                    if "error" in event:
                        raise SourceError(str(event["error"].get("message", "the stream failed")))
                    for src in event.get("sources") or []:
                        yield f"\n[{src['n']}] {src['path']}"
                    for choice in event.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield text
        except httpx.ConnectError:
            raise DaemonDown(self.url) from None

    async def start_daemon(self) -> None:
        if self._start is None:
            raise SourceError(f"aigw at {self.url} is not this machine's daemon: start it there")
        import asyncio

        await asyncio.to_thread(self._start)

    async def aclose(self) -> None:
        await self._http.aclose()
