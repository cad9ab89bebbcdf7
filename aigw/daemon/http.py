"""uvicorn's httptools protocol with limits on each request's head (its line and headers).

uvicorn bounds neither: a client may send headers of any size, which the parser buffers, or send
them a byte at a time and hold the connection (and its memory) for as long as it likes. Here a
head over `max_header_bytes` is answered 431, one not complete within `header_timeout_s` of its
first byte (or of the connection being made) is answered 408, and either closes the connection.
Bodies are the app's business (`aigw.api.body`). HTTP/1.0 clients get streams close-delimited.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle


def guarded_protocol(max_header_bytes: int, header_timeout_s: float) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn's `http` setting, with these limits."""

    class GuardedHttpTools(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _in_head = False  # the bytes arriving now belong to a request's head
        _head_bytes = 0
        _oversized = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._await_head()
            self._head_timer = self.loop.call_later(header_timeout_s, self._too_slow)

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            # Still in the head after all of it was parsed: every byte counted was head.
            over = self._oversized or (self._in_head and self._head_bytes > max_header_bytes)
            if over and not self.transport.is_closing():
                self._refuse(431, f"The request's headers exceed {max_header_bytes} bytes")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(header_timeout_s, self._too_slow)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._stop_timer()
            # A head that came whole in one read: measured when what was read exceeds the limit.
            if self._head_bytes > max_header_bytes:
                size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
                if size > max_header_bytes:
                    self._oversized = True  # refused once parsing returns; the app never sees it
                    return
            super().on_headers_complete()
            if self.scope.get("http_version") == "1.0":
                self.cycle.send = _close_delimited(self.cycle)  # type: ignore[method-assign,assignment]

        def on_body(self, body: bytes) -> None:
            if not self._oversized:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if self._oversized:
                return
            super().on_message_complete()
            self._await_head()  # what follows is the next request's head

        def _await_head(self) -> None:
            self._in_head = True
            self._head_bytes = 0

        def _stop_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _too_slow(self) -> None:
            self._head_timer = None
            if not self._in_head or self.transport.is_closing():
                return
            if self._head_bytes:
                self._refuse(408, f"The request's headers took more than {header_timeout_s:g} s")
            else:  # a connection that never said anything: nobody to answer
                self.transport.close()

        def _refuse(self, status: int, message: str) -> None:
            self._in_head = False
            self._stop_timer()
            body = orjson.dumps(
                {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
            )
            head: list[Any] = [STATUS_LINE[status]]
            head += [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"connection: close\r\n\r\n",
            ]
            self.transport.write(b"".join(head) + body)
            self.transport.close()

    return GuardedHttpTools


def _close_delimited(cycle: RequestResponseCycle) -> Callable[[Any], Awaitable[None]]:
    """The cycle's `send` for an HTTP/1.0 client, which cannot read chunked encoding: a response
    of unknown length (a stream) is sent as is and ended by closing the connection, as HTTP/1.0
    frames it. (uvicorn would chunk it for every client.)"""
    send = cycle.send
    framed = True

    async def close_delimited(message: Any) -> None:
        nonlocal framed
        if message["type"] == "http.response.start":
            names = {name.lower() for name, _ in message.get("headers", ())}
            if b"content-length" not in names and b"transfer-encoding" not in names:
                framed = False
                cycle.keep_alive = False
                cycle.chunked_encoding = False  # so uvicorn adds no transfer-encoding
                cycle.expected_content_length = sys.maxsize
        elif not framed and message["type"] == "http.response.body" and not message.get("more_body"):
            cycle.expected_content_length = len(message.get("body", b""))  # the end: close
        await send(message)

    return close_delimited
