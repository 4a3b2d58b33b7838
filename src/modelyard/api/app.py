"""``create_app``: the FastAPI application — routers, problem+json, guards, UI, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from modelyard import __version__
from modelyard.api import problems
from modelyard.api.routes import (
    conversations,
    downloads,
    events,
    models,
    providers,
    pulls,
    system,
)
from modelyard.api.security import SecurityMiddleware
from modelyard.config import Settings, load_settings
from modelyard.errors import ConfigError
from modelyard.runtimes.instances import is_local_host
from modelyard.services import Services

STATIC = Path(__file__).resolve().parent.parent / "static"


def _check_bind(settings: Settings) -> None:
    host = settings.host
    local = is_local_host(host)
    if not local and not settings.api_key:
        raise ConfigError(
            f"refusing to listen on {host} without an API key",
            hint="Set MODELYARD_API_KEY (or bind to 127.0.0.1).",
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Services are created here; background work starts in the lifespan."""
    settings = settings or load_settings()
    _check_bind(settings)
    services = Services.build(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await services.startup()
        try:
            yield
        finally:
            await services.shutdown()

    app = FastAPI(
        title="modelyard",
        version=__version__,
        description="See, fetch, run and talk to the language models on your own machines.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = services
    problems.install(app)
    # Order matters: specific /api/models/... routers before the catch-all model routes.
    for module in (providers, system, events, conversations, downloads, pulls, models):
        app.include_router(module.router)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(SecurityMiddleware, services=services)
    return app
