"""/admin/*: operations on the daemon itself. Local models: what is loaded, load, unload."""

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
