"""HTTP transport shared by the cloud providers: one pooled aiohttp session, timeouts, and the
mapping of transport failures to `aigw.errors` types. Vendor formats live in the providers.

Timeouts (from the provider's config): `connect_timeout_s` to open a connection;
`first_byte_timeout_s` until the response headers (and, for non-streaming calls, each read);
`read_timeout_s` between stream chunks; `total_timeout_s` for the whole exchange.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from yarl import URL

from aigw.config.load import redact_url
from aigw.errors import UpstreamConnectError, UpstreamProtocolError, UpstreamStatusError, UpstreamTimeout
from aigw.providers.remote import Connection, HttpProviderConfig
from aigw.providers.sse import SSEEvent, SSEParser

_URL_CACHE_SIZE = 256
# (status, body, response headers) -> the error to raise for an HTTP error status.
ErrorMapper = Callable[[int, bytes, "CIMultiDictProxy[str]"], UpstreamStatusError]


def describe(e: BaseException) -> str:
    """What went wrong, in words a client can use: never the exception's own text, which may
    carry URLs (with credentials) or the HTTP library's internals (`<TransferEncodingError: ...>`)."""
    if isinstance(e, aiohttp.ClientConnectorError):
        return e.os_error.strerror or "cannot connect"
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(e, aiohttp.ClientPayloadError):
        return "the response ended before it was complete"
    if isinstance(e, aiohttp.ClientResponseError):
        return "the response was not valid HTTP"
    if isinstance(e, aiohttp.InvalidURL):
        return "invalid URL"
    if isinstance(e, aiohttp.ClientOSError):
        return e.strerror or "network error"
    if isinstance(e, aiohttp.ClientError):
        return "network error"
    return "unexpected error"


class HttpTransport:
    def __init__(
        self, name: str, connection: Connection, config: HttpProviderConfig, map_error: ErrorMapper
    ) -> None:
        self.name = name
        self.base = connection.base_url.rstrip("/")
        headers = connection.headers
        self._cfg = config
        self._map_error = map_error
        merged = {"Content-Type": "application/json", "Accept": "application/json", **headers}
        for k, v in config.headers.items():
            merged[k] = v.get_secret_value()
        self._headers = merged
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
        self._in_use = 0

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
            url = URL(self.base + path, encoded=False)
            if len(self._urls) < _URL_CACHE_SIZE:  # paths may carry client-chosen model names
                self._urls[path] = url
        return url

    async def send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        stream: bool = False,
        headers: Mapping[str, str] | None = None,
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
                        method, self._url(path), data=data, timeout=self._stream_timeout, headers=headers
                    )
            else:
                resp = await session.request(method, self._url(path), data=data, headers=headers)
        except TimeoutError:
            raise UpstreamTimeout(
                f"{self.name}: no response within {self._cfg.first_byte_timeout_s:g} s", provider=self.name
            ) from None
        except aiohttp.ClientError as e:
            raise UpstreamConnectError(
                f"{self.name}: cannot reach {redact_url(self.base)}: {describe(e)}", provider=self.name
            ) from None
        if resp.status >= 400:
            try:
                payload = await self.read(resp)
            finally:
                resp.release()
            raise self._map_error(resp.status, payload, resp.headers)
        self._in_use += 1
        return resp

    def _release(self, resp: aiohttp.ClientResponse) -> None:
        self._in_use -= 1
        resp.release()

    def in_use(self) -> int:
        """Responses handed out and not yet released (0 when idle: no connection leaked)."""
        return self._in_use

    def broken(self, e: BaseException, timed_out: str, lost: str) -> UpstreamTimeout | UpstreamConnectError:
        """A transfer that failed after the response began: a timeout, or a lost connection."""
        if isinstance(e, TimeoutError):
            return UpstreamTimeout(f"{self.name}: {timed_out}", provider=self.name)
        return UpstreamConnectError(f"{self.name}: {lost}: {describe(e)}", provider=self.name)

    async def read(self, resp: aiohttp.ClientResponse) -> bytes:
        try:
            return await resp.read()
        except (TimeoutError, aiohttp.ClientError) as e:
            raise self.broken(e, "response timed out", "connection lost") from None

    async def call_json(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        resp = await self.send(method, path, body, headers=headers)
        try:
            payload = await self.read(resp)
        finally:
            self._release(resp)
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(f"{self.name}: response is not JSON", provider=self.name) from None
        if not isinstance(data, dict):
            raise UpstreamProtocolError(f"{self.name}: response is not a JSON object", provider=self.name)
        return data

    async def events(
        self, path: str, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> AsyncGenerator[SSEEvent, None]:
        """POST `body` and yield the SSE events of the streamed answer, as they arrive.

        Errors before the first event surface from the first `__anext__()`. Closing the iterator
        early releases the connection.
        """
        resp = await self.send("POST", path, body, stream=True, headers=headers)
        parser = SSEParser()
        try:
            async for raw in resp.content.iter_any():
                for ev in parser.feed(raw):
                    yield ev
            for ev in parser.close():
                yield ev
        except (TimeoutError, aiohttp.ClientError) as e:
            raise self.broken(e, "stream stalled", "stream broke") from None
        finally:
            self._release(resp)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def json_event(name: str, data: str) -> dict[str, Any]:
    """An SSE event's data as a JSON object, or UpstreamProtocolError."""
    try:
        d = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError(f"{name}: stream event is not JSON", provider=name) from None
    if not isinstance(d, dict):
        raise UpstreamProtocolError(f"{name}: stream event is not an object", provider=name)
    return d
