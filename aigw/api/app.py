"""The app factory. The lifespan owns every service; nothing lives in module globals."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from aigw import __version__
from aigw.api.errors import install_error_handlers
from aigw.api.fastpath import FastPath
from aigw.api.routes import admin, chat, embeddings, health, models
from aigw.config import Config
from aigw.gateway import Gateway
from aigw.paths import Paths
from aigw.providers.registry import ProviderRegistry

log = logging.getLogger("aigw.api")


def create_app(
    config: Config,
    paths: Paths,
    *,
    registry: ProviderRegistry,
    environ: Mapping[str, str],
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gateway = Gateway.build(config, paths, registry, environ)
        app.state.gateway = gateway
        gateway.start()
        # What startup built lives as long as the process: keep it out of every GC pass, so
        # collections during generation (mlx allocates many small objects) stay short.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await gateway.aclose()

    app = FastAPI(title="aigw", version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    for r in (health.router, models.router, chat.router, embeddings.router, admin.router):
        app.include_router(r)
    return app


def create_asgi_app(
    config: Config,
    paths: Paths,
    *,
    registry: ProviderRegistry,
    environ: Mapping[str, str],
) -> ASGIApp:
    """The app the daemon serves: the FastAPI app behind the hot-path dispatcher."""
    app = create_app(config, paths, registry=registry, environ=environ)
    hot = {"/chat/completions": chat.chat_completions, "/embeddings": embeddings.embeddings}
    # Clients whose base URL lacks /v1 are served too, as by OpenAI-compatible servers generally.
    routes = {("POST", prefix + path): fn for path, fn in hot.items() for prefix in ("/v1", "")}
    return FastPath(app, routes)
