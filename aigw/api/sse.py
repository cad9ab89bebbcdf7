"""Server-Sent Events for OpenAI-style streams: encoding, and a lean streaming ASGI response.

`SSEResponse` forwards each chunk the moment it is produced (no buffering) and stops the
producer as soon as the client disconnects: a watcher task cancels the sending task when
`http.disconnect` arrives, and the producer's `aclose()` runs at once. The watcher starts once the
first chunk is on its way, so that its setup is not on the path to the client's first byte.
Cancelled by the server instead (the shutdown grace period ran out), it ends the stream with an
error event and [DONE].
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from aigw.domain import ChatChunk

DONE = b"data: [DONE]\n\n"


async def chain(first: ChatChunk | None, rest: AsyncIterator[ChatChunk]) -> AsyncGenerator[ChatChunk, None]:
    """A stream's first chunk (taken to look at it), then the rest."""
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk


def event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


class SSEResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        body: AsyncGenerator[bytes, None],
        headers: Mapping[str, str],
        on_unstarted: Callable[[], Awaitable[None]] | None = None,
        aborted: bytes | None = None,
    ) -> None:
        """`aborted` ends a stream the server cuts short (shutdown), in the stream's own dialect
        (by default OpenAI's error event and [DONE])."""
        # Deliberately not Response.__init__: there is no body to render up front.
        self.status_code = 200
        self.background = None
        self.stream = body
        # Closing a generator that never ran skips its `finally`: this cleans up instead.
        self._on_unstarted = on_unstarted
        self._aborted = aborted
        self.raw_headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        self.raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def _abort(self, send: Send) -> None:
        body = self._aborted
        if body is None:
            err = {"message": "aigw is shutting down", "type": "service_unavailable"}
            body = event({"error": {**err, "param": None, "code": None}}) + DONE
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": body, "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender = asyncio.current_task()
        assert sender is not None
        disconnected = started = iterated = False
        watcher: asyncio.Task[None] | None = None

        async def watch() -> None:
            nonlocal disconnected
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected = True
            sender.cancel()

        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            started = True
            iterated = True
            async for data in self.stream:
                await send({"type": "http.response.body", "body": data, "more_body": True})
                if watcher is None:  # after the first bytes are on their way: off the critical path
                    watcher = asyncio.get_running_loop().create_task(watch())
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            sender.uncancel()
            if started and not disconnected:
                # Cancelled by the server (shutdown grace period over): end the stream properly.
                await self._abort(send)
        finally:
            if watcher is not None:
                watcher.cancel()
            await self.stream.aclose()
            if not iterated and self._on_unstarted is not None:
                await self._on_unstarted()
