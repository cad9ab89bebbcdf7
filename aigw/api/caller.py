"""The caller of a request, as the gateway's operations take it: its key (resolved by the access
guard), address, Cache-Control header, and a way to notice it leaving."""

from __future__ import annotations

from starlette.requests import Request

from aigw.access.net import anonymous_subject
from aigw.api.dialects import dialect_of
from aigw.api.guard import SCOPE_ADMIN, SCOPE_KEY
from aigw.api.requestid import SCOPE_REQUEST_ID
from aigw.gateway.call import Caller


def caller_of(request: Request) -> Caller:
    client = request.client
    receive = request.receive

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    return Caller(
        key=request.scope.get(SCOPE_KEY),
        address=anonymous_subject(client.host) if client is not None else "unknown",
        cache_control=request.headers.get("cache-control"),
        gone=gone,
        admin=request.scope.get(SCOPE_ADMIN, False),
        request_id=request.scope.get(SCOPE_REQUEST_ID),
        dialect=dialect_of(request.scope["path"]),
    )
