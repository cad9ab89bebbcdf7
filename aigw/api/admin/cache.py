"""/admin/cache: the response cache's figures, and clearing it (all, or one model's answers)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, Query

from aigw.api.deps import GatewayDep
from aigw.cache.stats import cache_stats
from aigw.gateway.gateway import Gateway
from aigw.state.db import connect

router = APIRouter(prefix="/admin")


def _stats(gw: Gateway) -> dict[str, Any]:
    gw.meter.flush()  # the figures include every request answered so far
    if gw.database is None:
        return cache_stats(gw.cache.store, None, gw.cache.mode)
    with contextlib.closing(connect(gw.database)) as conn:
        return cache_stats(gw.cache.store, conn, gw.cache.mode)


@router.get("/cache")
async def stats(gw: GatewayDep) -> dict[str, Any]:
    return await asyncio.to_thread(_stats, gw)


@router.delete("/cache")
async def clear(
    gw: GatewayDep,
    model: str | None = Query(default=None, min_length=1, description="An alias, provider/model or model."),
) -> dict[str, Any]:
    """Remove every cached answer, or those of one model (an alias clears all its targets')."""
    store = gw.cache.store
    names = None if model is None else gw.models.cache_names(model)
    removed = 0 if store is None else await asyncio.to_thread(store.clear, names)
    return {"removed": removed, "model": model}
