"""The daemon's client: one sync face (`DaemonClient`, the CLI) and one async face
(`AsyncDaemonClient`, the TUI) over the same calls, credentials, errors and stream reading.

Credentials: calls to /admin/* carry the admin token, read from AIGW_HOME when needed (a daemon
started meanwhile makes it at its first start) and only ever sent to the daemon that this
AIGW_HOME's run lock says is running at that very URL; API calls carry AIGW_API_KEY when set,
else that same admin token. Every failure is a
`ClientError` (or `DaemonNotRunning`) whose message is one readable line.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson

from aigw.access.admin_token import read_admin_token
from aigw.access.net import is_loopback
from aigw.daemon.process import running_daemon
from aigw.errors import AigwError
from aigw.paths import Paths

DEFAULT_URL = "http://127.0.0.1:8080"


class ClientError(AigwError):
    """The daemon answered with an error, or the call failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DaemonNotRunning(ClientError):
    """Nothing answers at the daemon's URL."""


def daemon_url(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return (env.get("AIGW_URL") or DEFAULT_URL).rstrip("/")


class Credentials:
    """What to authenticate each call with (see the module docstring)."""

    def __init__(self, url: str, environ: Mapping[str, str], api_key: str | None = None) -> None:
        self._url = url
        self._api_key = api_key or environ.get("AIGW_API_KEY") or None
        local = is_loopback(urlsplit(url).hostname or "")
        self._paths = Paths.from_env(environ) if local else None

    def _admin_token(self) -> str | None:
        if self._paths is None:
            return None
        own = running_daemon(self._paths)
        if own is None or own.url.rstrip("/") != self._url:
            return None  # not this AIGW_HOME's daemon: its token stays here
        return read_admin_token(self._paths.admin_token_file)

    @property
    def admin(self) -> bool:
        """Whether /admin/* calls can be authenticated."""
        return self._admin_token() is not None

    def headers(self, path: str) -> dict[str, str]:
        if self._api_key is not None and not path.startswith("/admin"):
            token: str | None = self._api_key
        else:
            token = self._admin_token()
        return {"Authorization": f"Bearer {token}"} if token else {}


@dataclass(slots=True)
class StreamInfo:
    """What the daemon said about the answer: filled in as the stream is read."""

    provider: str = ""
    model: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    """For answers from a RAG collection: what the [n] citations refer to."""


def _error_message(status: int, body: bytes) -> str:
    try:
        err = orjson.loads(body).get("error", {})
        msg = err.get("message") if isinstance(err, dict) else None
    except (orjson.JSONDecodeError, AttributeError):
        msg = None
    return str(msg or f"HTTP {status} from aigw")


def _chat_call(
    messages: list[dict[str, Any]], model: str, rag: str | None, rerank: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The path and body of a streamed chat, grounded in a RAG collection when `rag` names one
    (its chunks re-ranked by the reranker `rerank`, if given)."""
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
    if rag is None:
        body["stream_options"] = {"include_usage": True}
        return "/v1/chat/completions", body
    if rag:  # "": the daemon's default collection
        body["collection"] = rag
    if rerank is not None:
        body["rerank"] = rerank
    return "/v1/rag/query", body


def _stream_text(line: str, info: StreamInfo) -> list[str] | None:
    """The answer text an SSE line carries (filling `info`); None at `[DONE]`."""
    if not line.startswith("data:"):
        return []
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    event = orjson.loads(data)
    if "error" in event:
        raise ClientError(str(event["error"].get("message", "the stream failed")))
    if event.get("usage"):
        info.usage = event["usage"]
    if isinstance(event.get("sources"), list):
        info.sources = event["sources"]
    out = []
    for choice in event.get("choices") or []:
        if choice.get("finish_reason"):
            info.finish_reason = choice["finish_reason"]
        text = (choice.get("delta") or {}).get("content")
        if text:
            out.append(text)
    return out


def _not_running(url: str) -> DaemonNotRunning:
    return DaemonNotRunning(f"aigw is not running at {url} (start it with `aigw start`)")


class DaemonClient:
    """The sync face, for the CLI."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 600.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.url = (url or daemon_url(env)).rstrip("/")
        self._auth = Credentials(self.url, env, api_key)
        self._http = httpx.Client(
            trust_env=False,  # never through an HTTP proxy: the daemon is local, the token secret
            base_url=self.url,
            timeout=httpx.Timeout(timeout, connect=3.0),
        )

    @property
    def admin(self) -> bool:
        """Whether this client can make /admin/* calls (it has this daemon's admin token)."""
        return self._auth.admin

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            resp = self._http.request(method, path, json=body, headers=self._auth.headers(path))
        except httpx.ConnectError:
            raise _not_running(self.url) from None
        except httpx.HTTPError as e:
            raise ClientError(f"request to {self.url}{path} failed: {e}") from None
        if resp.status_code >= 400:
            raise ClientError(_error_message(resp.status_code, resp.read()), status=resp.status_code)
        return resp.json()

    def _get(self, path: str) -> Any:
        return self.call("GET", path)

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self.call("POST", path, body)

    # -- the daemon ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        data: dict[str, Any] = self._get("/health")
        return data

    def health_detailed(self) -> dict[str, Any]:
        data: dict[str, Any] = self._get("/health/detailed")
        return data

    def list_models(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._get("/v1/models")["data"]
        return data

    def reload_keys(self) -> None:
        self._post("/admin/keys/reload", {})

    def cache_stats(self) -> dict[str, Any]:
        data: dict[str, Any] = self._get("/admin/cache")
        return data

    def cache_clear(self, model: str | None = None) -> dict[str, Any]:
        path = "/admin/cache" if model is None else f"/admin/cache?model={quote(model, safe='')}"
        data: dict[str, Any] = self.call("DELETE", path)
        return data

    def local_status(self) -> dict[str, Any]:
        data: dict[str, Any] = self._get("/admin/local")
        return data

    def load_model(self, model: str) -> dict[str, Any]:
        data: dict[str, Any] = self._post("/admin/local/load", {"model": model})
        return data

    def unload_model(self, model: str) -> dict[str, Any]:
        data: dict[str, Any] = self._post("/admin/local/unload", {"model": model})
        return data

    # -- RAG -----------------------------------------------------------------------------------

    def rag_files(self, collection: str) -> dict[str, str]:
        data: dict[str, str] = self._get(f"/v1/rag/collections/{quote(collection, safe='')}/files")["files"]
        return data

    def rag_index(
        self,
        collection: str,
        documents: list[dict[str, Any]],
        remove: list[str] | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"collection": collection, "documents": documents, "remove": remove or []}
        if model is not None:
            body["model"] = model
        data: dict[str, Any] = self._post("/v1/rag/index", body)
        return data

    def rag_search(
        self, collection: str | None, query: str, k: int | None = None, rerank: str | None = None
    ) -> list[dict[str, Any]]:
        """The nearest chunks; `collection` None: the daemon's default collection; `rerank`: a
        reranker that re-ranks them."""
        body: dict[str, Any] = {"query": query}
        if collection is not None:
            body["collection"] = collection
        if k is not None:
            body["k"] = k
        if rerank is not None:
            body["rerank"] = rerank
        data: list[dict[str, Any]] = self._post("/v1/rag/search", body)["data"]
        return data

    def rag_stats(self) -> dict[str, Any]:
        data: dict[str, Any] = self._get("/v1/rag/stats")
        return data

    def rag_remove(self, collection: str) -> bool:
        return bool(self.call("DELETE", f"/v1/rag/collections/{quote(collection, safe='')}")["deleted"])

    # -- chat ----------------------------------------------------------------------------------

    def chat_stream(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        info: StreamInfo,
        rag: str | None = None,
        rerank: str | None = None,
    ) -> Iterator[str]:
        """Yield the answer's text as it arrives; `info` is filled with provider, model and usage.
        With `rag`, the answer is grounded in that collection and `info.sources` says which
        (re-ranked by the reranker `rerank`, if given)."""
        path, body = _chat_call(messages, model, rag, rerank)
        try:
            with self._http.stream("POST", path, json=body, headers=self._auth.headers(path)) as resp:
                if resp.status_code >= 400:
                    raise ClientError(_error_message(resp.status_code, resp.read()), status=resp.status_code)
                info.provider = resp.headers.get("x-aigw-provider", "")
                info.model = resp.headers.get("x-aigw-model", "")
                for line in resp.iter_lines():
                    texts = _stream_text(line, info)
                    if texts is None:
                        return
                    yield from texts
        except httpx.ConnectError:
            raise _not_running(self.url) from None
        except httpx.HTTPError as e:
            raise ClientError(f"the stream from {self.url} broke: {e}") from None


class AsyncDaemonClient:
    """The async face, for the TUI: the same credentials, errors and stream reading."""

    def __init__(self, url: str, *, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.url = url.rstrip("/")
        self._auth = Credentials(self.url, env)
        self._http = httpx.AsyncClient(
            base_url=self.url, timeout=httpx.Timeout(5.0, read=600.0), trust_env=False
        )

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            resp = await self._http.request(method, path, json=body, headers=self._auth.headers(path))
        except httpx.ConnectError:
            raise _not_running(self.url) from None
        except httpx.HTTPError as e:
            raise ClientError(f"{type(e).__name__} from {self.url}") from None
        if resp.status_code >= 400:
            raise ClientError(_error_message(resp.status_code, resp.content), status=resp.status_code)
        return resp.json()

    async def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = await self.call("GET", "/admin/stats")
        return data

    async def chat_stream(
        self, messages: list[dict[str, Any]], *, model: str, info: StreamInfo, rag: str | None = None
    ) -> AsyncIterator[str]:
        path, body = _chat_call(messages, model, rag)
        try:
            async with self._http.stream("POST", path, json=body, headers=self._auth.headers(path)) as resp:
                if resp.status_code >= 400:
                    raise ClientError(
                        _error_message(resp.status_code, await resp.aread()), status=resp.status_code
                    )
                async for line in resp.aiter_lines():
                    texts = _stream_text(line, info)
                    if texts is None:
                        return
                    for text in texts:
                        yield text
        except httpx.ConnectError:
            raise _not_running(self.url) from None

    async def aclose(self) -> None:
        await self._http.aclose()
