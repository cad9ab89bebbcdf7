"""GET /v1/models and GET /v1/models/{id}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from aigw.api.deps import GatewayDep
from aigw.errors import ModelNotFound

router = APIRouter()


def _wire(mid: str, owned_by: str, created: int) -> dict[str, Any]:
    return {"id": mid, "object": "model", "created": created, "owned_by": owned_by}


@router.get("/v1/models")
@router.get("/models", include_in_schema=False)
async def list_models(gw: GatewayDep) -> dict[str, Any]:
    await gw.listing_index()
    return {"object": "list", "data": [_wire(m.id, m.owned_by, m.created) for m in gw.model_list()]}


@router.get("/v1/models/{model_id:path}")
@router.get("/models/{model_id:path}", include_in_schema=False)
async def get_model(model_id: str, gw: GatewayDep) -> dict[str, Any]:
    await gw.listing_index()
    for m in gw.model_list():
        if m.id == model_id:
            return _wire(m.id, m.owned_by, m.created)
    raise ModelNotFound(f"The model {model_id!r} does not exist", param="model")
