"""HTTP transport shared by the cloud providers: one connection pool per provider (`httpclient`),
timeouts, and the mapping of transport failures to `aigw.errors` types. Vendor formats live in
the providers.

Timeouts (from the provider's config): `connect_timeout_s` to open a connection;
`first_byte_timeout_s` until the response headers (and, for non-streaming calls, each read);
`read_timeout_s` between stream chunks; `total_timeout_s` for the whole exchange.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

import orjson

from aigw import __version__
from aigw.config import ProviderConfig, redact_url
from aigw.errors import UpstreamConnectError, UpstreamProtocolError, UpstreamStatusError, UpstreamTimeout
from aigw.providers.httpclient import (
    BadResponse,
    ConnectFailed,
    ConnectionLost,
    ConnectionPool,
    Headers,
    HttpClientError,
    Response,
)
from aigw.providers.sse import SSEEvent, SSEParser

# (status, body, response headers) -> the error to raise for an HTTP error status.
ErrorMapper = Callable[[int, bytes, Headers], UpstreamStatusError]


class HttpTransport:
    def __init__(
        self,
        name: str,
        base_url: str,
        headers: Mapping[str, str],
        config: ProviderConfig,
        map_error: ErrorMapper,
    ) -> None:
        self.name = name
        self.base = base_url.rstrip("/")
        self._cfg = config
        self._map_error = map_error
        merged = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": f"aigw/{__version__}",
            **headers,
        }
        for k, v in config.headers.items():
            merged[k] = v.get_secret_value()
        self._headers = list(merged.items())
        self._pool: ConnectionPool | None = None

    @property
    def pool(self) -> ConnectionPool:
        if self._pool is None:
            self._pool = ConnectionPool(
                self.base, limit=self._cfg.max_connections, connect_timeout=self._cfg.connect_timeout_s
            )
        return self._pool

    def in_use(self) -> int:
        """Upstream connections taken and not yet given back (0 when idle: no leak)."""
        return 0 if self._pool is None else self._pool.in_use()

    async def send(self, method: str, path: str, body: dict[str, Any] | None) -> Response:
        """Send a request; return the response once its headers arrived with a 2xx status."""
        data = None if body is None else orjson.dumps(body)
        try:
            resp = await self.pool.request(
                method,
                path,
                self._headers,
                data,
                head_timeout=self._cfg.first_byte_timeout_s,
                total_timeout=self._cfg.total_timeout_s,
            )
        except TimeoutError:
            raise UpstreamTimeout(
                f"{self.name}: no response within {self._cfg.first_byte_timeout_s:g} s", provider=self.name
            ) from None
        except ConnectFailed as e:
            raise UpstreamConnectError(
                f"{self.name}: cannot reach {redact_url(self.base)}: {e}", provider=self.name
            ) from None
        except HttpClientError as e:
            raise self.broken(e, "", "connection lost") from None
        if resp.status >= 400:
            try:
                payload = await self.read(resp)
            finally:
                resp.release()
            raise self._map_error(resp.status, payload, resp.headers)
        return resp

    def broken(
        self, e: BaseException, timed_out: str, lost: str
    ) -> UpstreamTimeout | UpstreamConnectError | UpstreamProtocolError:
        """A transfer that failed after the request was sent: a timeout, a lost connection, garbage."""
        if isinstance(e, TimeoutError):
            return UpstreamTimeout(f"{self.name}: {timed_out}", provider=self.name)
        if isinstance(e, BadResponse):
            return UpstreamProtocolError(f"{self.name}: {e}", provider=self.name)
        detail = str(e) if isinstance(e, ConnectionLost) else type(e).__name__
        return UpstreamConnectError(f"{self.name}: {lost}: {detail}", provider=self.name)

    async def read(self, resp: Response) -> bytes:
        try:
            return await resp.read(self._cfg.first_byte_timeout_s)
        except (TimeoutError, HttpClientError) as e:
            raise self.broken(e, "response timed out", "connection lost") from None

    async def call_json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = await self.send(method, path, body)
        try:
            payload = await self.read(resp)
        finally:
            resp.release()
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(f"{self.name}: response is not JSON", provider=self.name) from None
        if not isinstance(data, dict):
            raise UpstreamProtocolError(f"{self.name}: response is not a JSON object", provider=self.name)
        return data

    async def events(self, path: str, body: dict[str, Any]) -> AsyncGenerator[SSEEvent, None]:
        """POST `body` and yield the SSE events of the streamed answer, as they arrive.

        Errors before the first event surface from the first `__anext__()`. Closing the iterator
        early releases (closes) the connection.
        """
        resp = await self.send("POST", path, body)
        parser = SSEParser()
        try:
            async for raw in resp.iter_chunks(self._cfg.read_timeout_s):
                for ev in parser.feed(raw):
                    yield ev
            for ev in parser.close():
                yield ev
        except (TimeoutError, HttpClientError) as e:
            raise self.broken(e, "stream stalled", "stream broke") from None
        finally:
            resp.release()

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()


def json_event(name: str, data: str) -> dict[str, Any]:
    """An SSE event's data as a JSON object, or UpstreamProtocolError."""
    try:
        d = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError(f"{name}: stream event is not JSON", provider=name) from None
    if not isinstance(d, dict):
        raise UpstreamProtocolError(f"{name}: stream event is not an object", provider=name)
    return d
