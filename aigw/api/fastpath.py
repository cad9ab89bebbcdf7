"""A thin ASGI dispatcher in front of FastAPI for the proxied hot paths.

FastAPI's middleware and dependency machinery cost about as much CPU per request as the whole
proxying work. The few endpoints on the hot path (`POST /v1/chat/completions`, `/v1/embeddings`)
are plain `Request -> Response` functions, also mounted in FastAPI (for OpenAPI and for clarity);
this dispatcher calls them directly and hands everything else to FastAPI. A trailing slash is
dropped from every path first (`POST /v1/chat/completions/` is served; FastAPI would answer an
empty 307 redirect, which clients do not follow for a POST).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from aigw.api.errors import dialect_error_response
from aigw.errors import AigwError

log = logging.getLogger("aigw.api")

Endpoint = Callable[[Request], Awaitable[Response]]


class FastPath:
    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[tuple[str, str], Endpoint],
        inflight: Callable[[], AbstractContextManager[None]],
    ) -> None:
        """`inflight()` counts a request in progress while inside (the gateway's gauge, which
        exists once the app's lifespan has started)."""
        self.app = app
        self._routes = dict(routes)
        self._inflight = inflight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = None
        if scope["type"] == "http":
            path = scope["path"]
            if len(path) > 1 and path[-1] == "/":  # `/v1/chat/completions/` is served, not redirected
                scope["path"] = path = path.rstrip("/") or "/"
            endpoint = self._routes.get((scope["method"], path))
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app
        request = Request(scope, receive)
        with self._inflight():
            try:
                response = await endpoint(request)
            except AigwError as e:
                if e.status_code >= 500:
                    log.warning("%s: %s", type(e).__name__, e.message)
                response = dialect_error_response(scope["path"], e)
            except Exception:
                log.exception("unhandled error in %s %s", scope["method"], scope["path"])
                internal = AigwError("Internal error in aigw; see `aigw logs`")
                response = dialect_error_response(scope["path"], internal)
            await response(scope, receive, send)
