"""A typed httpx client of the daemon, shared by the CLI and the TUI.

Every failure is a `ClientError` (or `DaemonNotRunning`) whose message is one readable line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson

from aigw.errors import AigwError

DEFAULT_URL = "http://127.0.0.1:8080"


class ClientError(AigwError):
    """The daemon answered with an error, or the call failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DaemonNotRunning(ClientError):
    """Nothing answers at the daemon's URL."""


def daemon_url(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return (env.get("AIGW_URL") or DEFAULT_URL).rstrip("/")


def credential(url: str, environ: dict[str, str] | None = None) -> str | None:
    """What the CLI authenticates with: AIGW_API_KEY, else (for a daemon on this machine only:
    never sent to another host) the admin token from AIGW_HOME."""
    env = os.environ if environ is None else environ
    if env.get("AIGW_API_KEY"):
        return env["AIGW_API_KEY"]
    from aigw.access.admin_token import read_admin_token
    from aigw.access.net import is_loopback
    from aigw.paths import Paths

    host = urlsplit(url).hostname or ""
    if not is_loopback(host):
        return None
    return read_admin_token(Paths.from_env(env).admin_token_file)


@dataclass(slots=True)
class StreamInfo:
    """What the daemon said about the answer: filled in as the stream is read."""

    provider: str = ""
    model: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    """For answers from a RAG collection: what the [n] citations refer to."""


def _error_message(resp: httpx.Response) -> str:
    try:
        err = orjson.loads(resp.read()).get("error", {})
        msg = err.get("message") if isinstance(err, dict) else None
    except (orjson.JSONDecodeError, AttributeError):
        msg = None
    return str(msg or f"HTTP {resp.status_code} from aigw")


class DaemonClient:
    def __init__(self, url: str | None = None, *, api_key: str | None = None, timeout: float = 600.0) -> None:
        self.url = (url or daemon_url()).rstrip("/")
        api_key = api_key or credential(self.url)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            trust_env=False,  # never through an HTTP proxy: the daemon is local, the token secret
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=3.0),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _not_running(self) -> DaemonNotRunning:
        return DaemonNotRunning(f"aigw is not running at {self.url} (start it with `aigw start`)")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            resp = self._http.request(method, path, json=body)
        except httpx.ConnectError:
            raise self._not_running() from None
        except httpx.HTTPError as e:
            raise ClientError(f"request to {self.url}{path} failed: {e}") from None
        if resp.status_code >= 400:
            raise ClientError(_error_message(resp), status=resp.status_code)
        return resp.json()

    def health(self) -> dict[str, Any]:
        data: dict[str, Any] = self._get("/health")
        return data

    def health_detailed(self) -> dict[str, Any]:
        data: dict[str, Any] = self._get("/health/detailed")
        return data

    def _get(self, path: str) -> Any:
        return self._call("GET", path)

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, body)

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

    def rag_search(self, collection: str, query: str, k: int | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"collection": collection, "query": query}
        if k is not None:
            body["k"] = k
        data: list[dict[str, Any]] = self._post("/v1/rag/search", body)["data"]
        return data

    def rag_stats(self) -> dict[str, Any]:
        data: dict[str, Any] = self._get("/v1/rag/stats")
        return data

    def rag_remove(self, collection: str) -> bool:
        return bool(self._call("DELETE", f"/v1/rag/collections/{quote(collection, safe='')}")["deleted"])

    def cache_stats(self) -> dict[str, Any]:
        data: dict[str, Any] = self._get("/admin/cache")
        return data

    def cache_clear(self, model: str | None = None) -> dict[str, Any]:
        path = "/admin/cache" if model is None else f"/admin/cache?model={quote(model, safe='')}"
        data: dict[str, Any] = self._call("DELETE", path)
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

    def list_models(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._get("/v1/models")["data"]
        return data

    def chat_stream(
        self, messages: list[dict[str, Any]], *, model: str, info: StreamInfo, rag: str | None = None
    ) -> Iterator[str]:
        """Yield the answer's text as it arrives; `info` is filled with provider, model and usage.
        With `rag`, the answer is grounded in that collection and `info.sources` says which."""
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
        if rag is None:
            path = "/v1/chat/completions"
            body["stream_options"] = {"include_usage": True}
        else:
            path = "/v1/rag/query"
            body["collection"] = rag
        try:
            with self._http.stream("POST", path, json=body) as resp:
                if resp.status_code >= 400:
                    raise ClientError(_error_message(resp), status=resp.status_code)
                info.provider = resp.headers.get("x-aigw-provider", "")
                info.model = resp.headers.get("x-aigw-model", "")
                yield from self._read_sse(resp, info)
        except httpx.ConnectError:
            raise self._not_running() from None
        except httpx.HTTPError as e:
            raise ClientError(f"the stream from {self.url} broke: {e}") from None

    @staticmethod
    def _read_sse(resp: httpx.Response, info: StreamInfo) -> Iterator[str]:
        for line in resp.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            event = orjson.loads(data)
            if "error" in event:
                raise ClientError(str(event["error"].get("message", "the stream failed")))
            if event.get("usage"):
                info.usage = event["usage"]
            if isinstance(event.get("sources"), list):
                info.sources = event["sources"]
            for choice in event.get("choices") or []:
                if choice.get("finish_reason"):
                    info.finish_reason = choice["finish_reason"]
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield text
