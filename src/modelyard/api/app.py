"""``create_app``: the FastAPI application — routers, problem+json, guards, UI, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from modelyard import __version__
from modelyard.api import pages, problems
from modelyard.api.compression import ApiCompression
from modelyard.api.headers import SecurityHeaders
from modelyard.api.policy import RoutePolicy, RouteTable
from modelyard.api.routes import (
    containers,
    conversations,
    downloads,
    events,
    gateway,
    gateway_info,
    logs,
    models,
    monitoring,
    providers,
    pulls,
    system,
)
from modelyard.api.security import SecurityMiddleware
from modelyard.config import Settings, load_settings
from modelyard.errors import ConfigError
from modelyard.services import Services
from modelyard.validation import is_local_host

# Order matters: specific /api/models/... routers before the catch-all model routes.
ROUTERS = (
    providers,
    logs,
    monitoring,
    containers,
    system,
    events,
    conversations,
    downloads,
    pulls,
    models,
    gateway_info,
    gateway,
)
DESCRIPTION = """See, fetch, run and talk to the language models on your own machines.

Errors are RFC 9457 `application/problem+json` with a stable `code` and a `hint`. The
WebSockets, which OpenAPI cannot describe:
"""


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
        description=DESCRIPTION + events.WEBSOCKET_DOC + pulls.WEBSOCKET_DOC + logs.WEBSOCKET_DOC,
        lifespan=lifespan,
        docs_url=None,  # pages.py serves /docs from local files
        redoc_url=None,
        # FastAPI's OpenTelemetry hooks, off: modelyard exports Prometheus metrics, and the
        # check whether a provider is configured cost CPU on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = services
    problems.install(app)
    table = RouteTable(settings.max_body_bytes)
    openapi = next(r for r in app.router.routes if getattr(r, "path", "") == app.openapi_url)
    table.add(openapi, table.default)
    pages.install(app, table)
    # The gateway takes images: its body limit is a setting of its own.
    gateway_limit = RoutePolicy(max_body=settings.gateway_max_body_bytes)
    for module in ROUTERS:
        problems.document(module.router)
        app.include_router(module.router)
        table.add_router(module.router, gateway_limit if module is gateway else None)
    app.add_middleware(ApiCompression)
    # CORS is applied inside the guards, per route (api/security.py).
    app.add_middleware(SecurityMiddleware, services=services, routes=table)
    app.add_middleware(SecurityHeaders)
    return app
