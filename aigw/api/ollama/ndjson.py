"""Ollama's streams: JSON lines, with the SSE response's handling of disconnects and shutdown."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import orjson

from aigw.api import sse
from aigw.api.ollama.errors import error_body
from aigw.errors import ServiceUnavailable

_SHUTDOWN = error_body(ServiceUnavailable("aigw is shutting down")) + b"\n"


def line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


class NDJSONResponse(sse.SSEResponse):
    media_type = "application/x-ndjson"

    def __init__(
        self,
        body: AsyncGenerator[bytes, None],
        headers: dict[str, str],
        on_unstarted: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(body, headers, on_unstarted, _SHUTDOWN)
        self.raw_headers[0] = (b"content-type", b"application/x-ndjson")
