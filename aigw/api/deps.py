"""Access to the services the lifespan owns."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from aigw.gateway.gateway import Gateway


def get_gateway(request: Request) -> Gateway:
    return cast(Gateway, request.app.state.gateway)


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
