"""Where the dashboard gets its data: the daemon, through the async face of aigw's daemon client.
A `Source` protocol keeps the app testable with canned data."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from aigw.daemon.client import AsyncDaemonClient, ClientError, DaemonNotRunning, StreamInfo

DaemonDown = DaemonNotRunning
"""Nothing answers at the daemon's URL."""
SourceError = ClientError
"""The daemon answered with an error (the message is one line)."""


class Source(Protocol):
    url: str

    async def stats(self) -> dict[str, Any]: ...

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def chat(self, model: str, messages: list[dict[str, Any]], rag: str | None) -> AsyncIterator[str]: ...

    async def start_daemon(self) -> None: ...


class DaemonSource:
    """The daemon at `client.url`; `start` (blocking) starts it, when this dashboard may."""

    def __init__(self, client: AsyncDaemonClient, start: Callable[[], object] | None = None) -> None:
        self.url = client.url
        self._client = client
        self._start = start

    async def stats(self) -> dict[str, Any]:
        return await self._client.stats()

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = await self._client.call("POST", path, body)
        return data

    async def chat(self, model: str, messages: list[dict[str, Any]], rag: str | None) -> AsyncIterator[str]:
        info = StreamInfo()
        shown = 0
        async for text in self._client.chat_stream(messages, model=model, info=info, rag=rag):
            if len(info.sources) > shown:  # the sources come first: a blank line sets the answer apart
                yield "".join(f"\n[{src['n']}] {src['path']}" for src in info.sources[shown:]) + "\n\n"
                shown = len(info.sources)
            yield text

    async def start_daemon(self) -> None:
        if self._start is None:
            raise SourceError(f"aigw at {self.url} is not this machine's daemon: start it there")
        await asyncio.to_thread(self._start)

    async def aclose(self) -> None:
        await self._client.aclose()
