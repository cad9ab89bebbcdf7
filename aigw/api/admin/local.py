"""/admin/*: operations on the daemon itself (the access guard checks the admin token).
Local models: what is loaded, load, unload; keys reload; rate-limit use and reset."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from aigw.api.deps import GatewayDep

router = APIRouter(prefix="/admin")


class ModelRef(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    model: str = Field(min_length=1)


@router.get("/local")
async def local_status(gw: GatewayDep) -> dict[str, Any]:
    return {**gw.engine.memory(), "loaded": gw.engine.status()}


@router.post("/local/load")
async def load(ref: ModelRef, gw: GatewayDep) -> dict[str, Any]:
    key = await gw.local_key(ref.model)
    await gw.engine.load(key)
    return {"model": key, "loaded": True, "status": gw.engine.slot_status(key)}


@router.post("/local/unload")
async def unload(ref: ModelRef, gw: GatewayDep) -> dict[str, Any]:
    key = await gw.local_key(ref.model)
    was_loaded = await gw.engine.unload(key)
    return {"model": key, "loaded": False, "was_loaded": was_loaded}


@router.post("/keys/reload")
async def reload_keys(gw: GatewayDep) -> dict[str, Any]:
    """The CLI changed the keys table: forget cached lookups now rather than within seconds."""
    gw.key_cache.clear()
    return {"reloaded": True}


@router.get("/ratelimit/{subject}")
async def ratelimit_status(subject: str, gw: GatewayDep) -> dict[str, Any]:
    """A key's (by id or name) or a client address's current rate-limit use."""
    sid, key = gw.rate_subject(subject)
    snap = gw.meter.limiter.snapshot(sid, gw.meter.limits_for(key))
    spent = gw.meter.spent(key.id) if key is not None else None
    budget = key.budget_usd if key is not None else None
    return {
        "subject": sid,
        "key": key.name if key else None,
        **snap,
        "spent_usd": spent,
        "budget_usd": budget,
    }


@router.delete("/ratelimit/{subject}")
async def ratelimit_reset(subject: str, gw: GatewayDep) -> dict[str, Any]:
    sid, _ = gw.rate_subject(subject)
    gw.meter.limiter.reset(sid)
    return {"subject": sid, "reset": True}
