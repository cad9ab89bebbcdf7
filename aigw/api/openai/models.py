"""GET /v1/models and GET /v1/models/{id}.

Besides OpenAI's fields each model carries `capabilities` (chat, stream, embed, tools, reasoning,
...), so a client can tell a chat model from an embedding model, and a local model its
`context_length`; the OpenAI SDKs keep unknown fields.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from aigw.api.deps import GatewayDep
from aigw.api.guard import SCOPE_KEY
from aigw.errors import ModelNotFound, quoted
from aigw.gateway.models import Listed

router = APIRouter()


def _wire(m: Listed) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": m.id,
        "object": "model",
        "created": m.created,
        "owned_by": m.owned_by,
        "capabilities": sorted(c.value for c in m.capabilities),
    }
    if m.context_length is not None:
        out["context_length"] = m.context_length
    return out


@router.get("/v1/models")
@router.get("/models", include_in_schema=False)
async def list_models(request: Request, gw: GatewayDep) -> dict[str, Any]:
    """The models the caller's key may use (all of them without a key or a model list)."""
    await gw.models.fresh()
    return {"object": "list", "data": [_wire(m) for m in gw.models.listing(request.scope.get(SCOPE_KEY))]}


@router.get("/v1/models/{model_id:path}")
@router.get("/models/{model_id:path}", include_in_schema=False)
async def get_model(model_id: str, request: Request, gw: GatewayDep) -> dict[str, Any]:
    """Any name chat accepts: an alias, `provider/model`, or a bare model a provider serves."""
    await gw.models.fresh()
    found = gw.models.describe(model_id, request.scope.get(SCOPE_KEY))
    if found is None:
        raise ModelNotFound(f"The model {quoted(model_id)} does not exist", param="model")
    return _wire(found)
