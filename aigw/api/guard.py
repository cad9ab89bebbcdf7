"""The access guard: ASGI middleware in front of every endpoint.

In order, for each HTTP request:
  1. Host: while aigw listens on loopback, a Host header that is not a loopback name is refused
     (DNS rebinding: a web page whose name resolves to 127.0.0.1 must not reach the gateway).
  2. Origin: a browser request from an origin not in `server.allowed_origins` is refused (no
     wildcard CORS; a page cannot make a user's browser spend their tokens). Allowed origins get
     CORS headers, and their preflight requests an answer (`aigw.api.cors`).
  3. Credentials: /health is open; /admin/* needs the admin token; everything else accepts an API
     key (`Authorization: Bearer aigw-...`, or `x-api-key: aigw-...` as Anthropic's clients send
     it) and needs one when `require_keys` is on. With keys
     optional, a bearer token that is not an aigw key (the SDKs' "unused") is anonymous, but an
     unknown or revoked aigw key is refused rather than silently treated as anonymous.
Every response, refusals included, carries `x-request-id` (`aigw.api.requestid`).
The resolved key (or None) travels in the ASGI scope as `aigw.key`; `aigw.admin` is true for a
request made with the admin token.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aigw.access.admin_token import same_secret
from aigw.access.keys import KEY_PREFIX, ApiKey
from aigw.access.net import is_loopback
from aigw.api.anthropic.errors import error_body as anthropic_error_body
from aigw.api.anthropic.errors import speaks_anthropic
from aigw.api.cors import preflight_headers, response_headers
from aigw.api.errors import error_body
from aigw.api.ollama.errors import error_body as ollama_error_body
from aigw.api.ollama.errors import speaks_ollama
from aigw.api.requestid import CURRENT, HEADER, SCOPE_REQUEST_ID, request_id_for
from aigw.errors import AigwError, AuthenticationError, PermissionDenied, ServiceUnavailable, quoted

log = logging.getLogger("aigw.security")
SCOPE_KEY = "aigw.key"
SCOPE_ADMIN = "aigw.admin"


def _host_name(host: str) -> str:
    """The name part of a Host header: without its port, IPv6 brackets kept."""
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class AccessGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        loopback_only: bool,
        allowed_origins: Collection[str],
        require_keys: bool,
        admin_token: str,
        resolve_key: Callable[[str], ApiKey | None],
        refused: Callable[[str, str, str, AigwError], None] = lambda client, request_id, path, err: None,
    ) -> None:
        """`refused(client address, request id, path, error)` is told of each request refused here
        (the usage log keeps a row of it)."""
        self.app = app
        self._loopback_only = loopback_only
        self._origins = frozenset(allowed_origins)
        self._require_keys = require_keys
        self._admin_token = admin_token
        self._resolve_key = resolve_key
        self._refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = origin = auth = sent_id = requested = api_key = None
        for k, v in scope["headers"]:
            if k == b"host":
                host = v.decode("latin-1")
            elif k == b"authorization":
                auth = v.decode("latin-1")
            elif k == b"origin":
                origin = v.decode("latin-1")
            elif k == HEADER:
                sent_id = v
            elif k == b"access-control-request-headers":
                requested = v
            elif k == b"x-api-key":  # how Anthropic's clients send a key
                api_key = v.decode("latin-1").strip() or None
        rid = request_id_for(sent_id)
        scope[SCOPE_REQUEST_ID] = rid
        CURRENT.set(rid)
        extra = [(HEADER, rid.encode("latin-1"))]
        try:
            if self._loopback_only and not is_loopback(_host_name(host or "")):
                raise PermissionDenied(
                    f"Host {quoted(host or '')} is not allowed: aigw listens on loopback only; use "
                    "http://127.0.0.1 or http://localhost (a defence against DNS rebinding)"
                )
            if origin is not None:
                if origin not in self._origins:
                    raise PermissionDenied(
                        f"Origin {quoted(origin)} is not allowed; "
                        "add it to server.allowed_origins in config.toml"
                    )
                if scope["method"] == "OPTIONS":
                    await _empty(204, [*preflight_headers(origin.encode("latin-1"), requested), *extra], send)
                    return
                extra.extend(response_headers(origin.encode("latin-1")))
            scope[SCOPE_KEY] = self._authenticate(scope, bearer(auth) or api_key)
        except AigwError as e:
            client = scope.get("client")
            self._refused(client[0] if client else "unknown", rid, scope["path"], e)
            await _refuse(e, extra, send, scope["path"])
            return
        await self.app(scope, receive, _with_headers(send, extra))

    def _authenticate(self, scope: Scope, token: str | None) -> ApiKey | None:
        path = scope["path"]
        if path == "/health":
            return None
        is_admin = token is not None and same_secret(token, self._admin_token)
        if is_admin:
            scope[SCOPE_ADMIN] = True
        if path.startswith("/admin"):
            if not is_admin:
                raise AuthenticationError(
                    "/admin needs the admin token (`Authorization: Bearer` with the token in "
                    "AIGW_HOME's admin_token file)"
                )
            return None
        if is_admin:
            return None  # the admin may use the API too, under the anonymous limits
        if token is not None and token.startswith(KEY_PREFIX):
            try:
                key = self._resolve_key(token)
            except Exception:  # the key store is unreadable (locked, corrupt): not the client's fault
                log.exception("looking up an API key failed")
                raise ServiceUnavailable(
                    "API keys cannot be checked right now; retry", retry_after=1
                ) from None
            if key is None:
                raise AuthenticationError("Invalid API key: unknown or revoked (see `aigw keys list`)")
            return key
        if self._require_keys:
            raise AuthenticationError(
                "This gateway requires an API key: send `Authorization: Bearer aigw-...` "
                "(create one with `aigw keys create NAME`)"
            )
        return None


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


async def _empty(status: int, headers: list[tuple[bytes, bytes]], send: Send) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _refuse(e: AigwError, extra: list[tuple[bytes, bytes]], send: Send, path: str) -> None:
    """The refusal in the dialect of the path asked for (OpenAI's error object, Anthropic's, or
    Ollama's)."""
    if speaks_anthropic(path):
        body = anthropic_error_body(e)
    elif speaks_ollama(path):
        body = ollama_error_body(e)
    else:
        body = error_body(e.message, e.error_type, e.param, e.code)
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if isinstance(e, AuthenticationError):
        headers.append((b"www-authenticate", b"Bearer"))
    if isinstance(e, ServiceUnavailable) and e.retry_after is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(e.retry_after))).encode()))
    headers.extend(extra)
    start: dict[str, Any] = {"type": "http.response.start", "status": e.status_code, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
