"""The shared front half of every proxied endpoint: read, validate, resolve."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from aigw.api.body import read_json_object
from aigw.api.deps import get_gateway
from aigw.api.errors import invalid_request_from_validation
from aigw.api.openai.schemas import ChatCompletionRequest
from aigw.domain import Route
from aigw.errors import InvalidRequest
from aigw.gateway.gateway import Gateway


@dataclass(slots=True)
class Incoming:
    gateway: Gateway
    body: dict[str, Any]
    """The validated wire body, without aigw's own fields."""
    route: Route


async def accept(request: Request, schema: type[BaseModel]) -> Incoming:
    gw = get_gateway(request)
    body = await read_json_object(request, gw.config.server.max_body_bytes)
    try:
        parsed = schema.model_validate(body)
    except ValidationError as e:
        raise invalid_request_from_validation(e) from None
    if isinstance(parsed, ChatCompletionRequest) and (problem := parsed.cross_field_problem()):
        raise InvalidRequest(problem[1], param=problem[0])
    pinned = body.pop("provider", None)
    route = await gw.resolve(body["model"], pinned)
    return Incoming(gw, body, route)
