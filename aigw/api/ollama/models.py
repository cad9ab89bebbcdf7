"""Ollama's model endpoints: GET /api/version, /api/tags, /api/ps; POST /api/show.

/api/tags lists what /v1/models lists, in Ollama's `name:tag` form (see aigw.api.ollama.names):
local models with their file's size, a digest (the weights' fingerprint) and `details` read from
the files; cloud targets and aliases with size 0 and `format: "api"`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from aigw.api.body import read_json_object
from aigw.api.deps import get_gateway
from aigw.api.guard import SCOPE_ADMIN, SCOPE_KEY
from aigw.api.headers import JSONBytes
from aigw.api.ollama.errors import error_body, error_response
from aigw.api.ollama.names import LATEST, file_name, to_ollama
from aigw.api.ollama.ndjson import NDJSONResponse, line
from aigw.domain import Capability
from aigw.errors import AigwError, InvalidRequest, ModelNotFound, PermissionDenied, quoted
from aigw.gateway.gateway import Gateway
from aigw.gateway.models import Listed
from aigw.gateway.pulls import Planned

router = APIRouter()
OLLAMA_API_VERSION = "0.12.0"
"""The Ollama release whose API this one follows (clients check it before using newer fields)."""
_CAPS = MappingProxyType({
    Capability.CHAT: "completion", Capability.TOOLS: "tools", Capability.VISION: "vision",
    Capability.EMBED: "embedding", Capability.REASONING: "thinking", Capability.INSERT: "insert",
})  # fmt: skip


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _local_info(gw: Gateway, model_id: str) -> dict[str, Any] | None:
    """A local model's files described (off the event loop), else None."""
    provider_name, _, model = model_id.partition("/")
    provider = gw.providers.get(provider_name)
    describe = getattr(provider, "describe_model", None)
    info = describe(model) if describe is not None and model else None
    return info if isinstance(info, dict) else None


def _details(info: dict[str, Any] | None, owner: str) -> dict[str, Any]:
    if info is None:
        return {"format": "api", "family": owner, "families": [owner], "parameter_size": "",
                "quantization_level": ""}  # fmt: skip
    family = str(info.get("architecture") or "")
    return {
        "parent_model": "",
        "format": str(info.get("format") or ""),
        "family": family,
        "families": [family],
        "parameter_size": str(info.get("parameters") or ""),
        "quantization_level": str(info.get("quantization") or ""),
    }


def _digest(info: dict[str, Any] | None, name: str) -> str:
    seed = (info or {}).get("fingerprint") or name
    return hashlib.sha256(str(seed).encode()).hexdigest()


def _entry(m: Listed, info: dict[str, Any] | None) -> dict[str, Any]:
    name = to_ollama(m.id)
    return {
        "name": name,
        "model": name,
        "modified_at": _iso(m.created or time.time()),
        "size": int((info or {}).get("size_bytes") or 0),
        "digest": _digest(info, m.id),
        "details": _details(info, m.owned_by),
    }


@router.get("/", include_in_schema=False)
async def probe() -> Response:
    """What Ollama answers at its root: clients probe it to see a server is there."""
    return Response(b"Ollama is running", media_type="text/plain")


@router.get("/api/version")
async def version() -> Response:
    return JSONBytes(orjson.dumps({"version": OLLAMA_API_VERSION}), {})


@router.get("/api/tags")
async def tags(request: Request) -> Response:
    gw = get_gateway(request)
    await gw.models.fresh()
    listed = gw.models.listing(request.scope.get(SCOPE_KEY))
    infos = await asyncio.to_thread(lambda: [_local_info(gw, m.id) for m in listed])
    return JSONBytes(orjson.dumps({"models": [_entry(m, i) for m, i in zip(listed, infos, strict=True)]}), {})


@router.get("/api/ps")
async def ps(request: Request) -> Response:
    gw = get_gateway(request)
    now = time.time()
    out = []
    for s in gw.engine.status():
        info = await asyncio.to_thread(_local_info, gw, s["model"])
        left = s.get("unloads_in_s")
        expires = now + left if left is not None else now + 10 * 365 * 86400
        name = to_ollama(s["model"])
        out.append({
            "name": name, "model": name, "size": s["memory_bytes"], "digest": _digest(info, s["model"]),
            "details": _details(info, "local"), "expires_at": _iso(expires), "size_vram": 0,
        })  # fmt: skip
    return JSONBytes(orjson.dumps({"models": out}), {})


@router.post("/api/show")
async def show(request: Request) -> Response:
    try:
        gw = get_gateway(request)
        _, given = await _named(request, gw)
        await gw.models.fresh()
        found = gw.models.describe(given, request.scope.get(SCOPE_KEY))
        if found is None:
            raise ModelNotFound(f"model {quoted(given)} not found", param="model")
        info = await asyncio.to_thread(_local_info, gw, found.id)
        caps = sorted({_CAPS[c] for c in found.capabilities if c in _CAPS})
        arch = _details(info, found.owned_by)["family"]
        model_info: dict[str, Any] = {"general.architecture": arch}
        if found.context_length is not None:
            model_info[f"{arch}.context_length"] = found.context_length
        out = {
            "modelfile": "", "parameters": "", "template": str((info or {}).get("template_text") or ""),
            "details": _details(info, found.owned_by), "model_info": model_info, "capabilities": caps,
            "modified_at": _iso(found.created or time.time()),
        }  # fmt: skip
        return JSONBytes(orjson.dumps(out), {})
    except AigwError as e:
        return error_response(e)


async def _named(request: Request, gw: Gateway) -> tuple[dict[str, Any], str]:
    """The request's body and the model it names (`model`, or the older `name`)."""
    raw = await read_json_object(request.scope, request.receive, gw.config.server.max_body_bytes)
    given = raw.get("model") or raw.get("name")
    if not isinstance(given, str) or not given:
        raise InvalidRequest("model is required", param="model")
    return raw, given


def _may_change_models(request: Request) -> None:
    """Pulling and deleting change what every caller is served: with API keys in use, only the
    admin token may (as for /admin/local); without keys, any local caller, as with Ollama."""
    if request.scope.get(SCOPE_KEY) is not None and not request.scope.get(SCOPE_ADMIN):
        raise PermissionDenied("pulling and deleting models needs the admin token when API keys are in use")


@router.post("/api/pull")
async def pull(request: Request) -> Response:
    """aigw's own pull: NDJSON progress (a line per file as it is verified, then `success`), or one
    line when `stream` is false; a failure after the start is an `{"error"}` line."""
    try:
        gw = get_gateway(request)
        raw, given = await _named(request, gw)
        if gw.pulls is None:
            raise InvalidRequest("this gateway has no models dir to pull into", param="model")
        _may_change_models(request)
        planned = gw.pulls.plan(given.removesuffix(LATEST))  # a bad name is a 400 before any progress
    except AigwError as e:
        return error_response(e)
    if raw.get("stream") is False:
        try:
            await _pulled(gw, planned, lambda _event: None)
        except AigwError as e:
            return error_response(e)
        return JSONBytes(orjson.dumps({"status": "success"}), {})
    return NDJSONResponse(_pull_lines(gw, planned), {})


async def _pulled(gw: Gateway, planned: Planned, progress: Callable[[dict[str, Any]], None]) -> None:
    """Pull, then list the models again: the new one is served at once."""
    assert gw.pulls is not None
    await gw.pulls.pull(planned, progress)
    await gw.models.refresh()


async def _pull_lines(gw: Gateway, planned: Planned) -> AsyncGenerator[bytes, None]:
    events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    yield line({"status": "pulling manifest"})
    task = asyncio.create_task(_pulled(gw, planned, events.put_nowait))
    task.add_done_callback(lambda _t: events.put_nowait(None))
    try:
        while (event := await events.get()) is not None:
            yield line(event)
        await task
        yield line({"status": "verifying sha256 digest"})
        yield line({"status": "success"})
    except AigwError as e:
        yield error_body(e) + b"\n"
    finally:
        task.cancel()  # the client left: the download stops at its next chunk


@router.delete("/api/delete")
async def delete(request: Request) -> Response:
    try:
        gw = get_gateway(request)
        _, given = await _named(request, gw)
        if gw.pulls is None:
            raise ModelNotFound(f"model {quoted(given)} not found", param="model")
        _may_change_models(request)
        provider = given.split("/", 1)[0] if "/" in given else None
        await gw.pulls.delete(file_name(given), provider)
        await gw.models.refresh()
        return Response(status_code=200)
    except AigwError as e:
        return error_response(e)
