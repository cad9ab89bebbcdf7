"""GET /v1/models and GET /v1/models/{id}.

Besides OpenAI's fields each model carries `capabilities` (chat, stream, embed, tools, ...), so a
client can tell a chat model from an embedding model; the OpenAI SDKs keep unknown fields.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from aigw.api.deps import GatewayDep
from aigw.errors import ModelNotFound, quoted
from aigw.gateway.models import Listed

router = APIRouter()


def _wire(m: Listed) -> dict[str, Any]:
    return {
        "id": m.id,
        "object": "model",
        "created": m.created,
        "owned_by": m.owned_by,
        "capabilities": sorted(c.value for c in m.capabilities),
    }


@router.get("/v1/models")
@router.get("/models", include_in_schema=False)
async def list_models(gw: GatewayDep) -> dict[str, Any]:
    await gw.models.fresh()
    return {"object": "list", "data": [_wire(m) for m in gw.models.listing()]}


@router.get("/v1/models/{model_id:path}")
@router.get("/models/{model_id:path}", include_in_schema=False)
async def get_model(model_id: str, gw: GatewayDep) -> dict[str, Any]:
    await gw.models.fresh()
    for m in gw.models.listing():
        if m.id == model_id:
            return _wire(m)
    raise ModelNotFound(f"The model {quoted(model_id)} does not exist", param="model")
