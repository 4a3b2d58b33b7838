"""Metrics, connection info, audit log and API keys."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from modelyard import __version__
from modelyard.api.deps import ServicesDep
from modelyard.api.policy import policy
from modelyard.providers.registry import registry
from modelyard.runtimes.instances import Instance, InstanceOrigin

router = APIRouter(tags=["system"], dependencies=[policy()])


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    scopes: list[str] = Field(default_factory=lambda: ["read"])


@router.get("/metrics", include_in_schema=True)
async def metrics(services: ServicesDep) -> Response:
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/version")
async def version() -> dict[str, str]:
    return {"version": __version__}


def _no_target() -> str:
    local = [
        p.label for p in registry if p.api_paths.openai is not None and not p.capabilities.cloud
    ]
    return (
        f"# No instance serves the OpenAI API yet: add a {', '.join(local)} instance\n"
        "# (Providers page, or POST /api/providers/{provider}/instances)\n"
        "# and this snippet will use its base URL.\n"
    )


def openai_target(instances: list[Instance]) -> Instance | None:
    """The instance the OpenAI SDK snippet talks to: the first local runtime serving the
    OpenAI API (servers started for one GGUF model last: they come and go), else a hosted
    API that speaks it."""
    speaking = [i for i in instances if registry.get(i.config.provider).api_paths.openai]
    local = sorted(
        (i for i in speaking if not registry.get(i.config.provider).capabilities.cloud),
        key=lambda i: i.origin is InstanceOrigin.MODEL,
    )
    return local[0] if local else next(iter(speaking), None)


def openai_snippet(instances: list[Instance]) -> str:
    """Python for the OpenAI SDK against a configured instance; a key is never written out,
    only the environment variable it is read from."""
    target = openai_target(instances)
    if target is None:
        header, base_url, key = _no_target(), "http://HOST:PORT/v1", "'unused'"
    else:
        cfg = target.config
        header = f"# The OpenAI API of {cfg.key}\n"
        base_url = cfg.base_url if cfg.base_url.endswith("/v1") else f"{cfg.base_url}/v1"
        if cfg.api_key_env:
            header += "import os\n"
            key = f"os.environ[{cfg.api_key_env!r}]"
        else:
            key = "'YOUR_API_KEY'" if cfg.api_key else "'unused'"
    return (
        f"{header}from openai import OpenAI\n"
        f"client = OpenAI(base_url={base_url!r}, api_key={key})\n"
        "print(client.models.list())"
    )


@router.get("/api/connection-info")
async def connection_info(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Base URLs and copy-paste snippets for talking to modelyard and its instances."""
    base = str(request.base_url).rstrip("/")
    endpoints = [
        {"provider": i.config.provider, "id": i.config.id, "base_url": i.config.base_url}
        for i in services.instances.list()
    ]
    return {
        "modelyard": base,
        "openapi": f"{base}/openapi.json",
        "events": base.replace("http", "ws", 1) + "/ws/events",
        "instances": endpoints,
        "open_webui": services.settings.open_webui_url or None,
        "snippets": {
            "curl": f"curl -s {base}/api/providers/status",
            "python": (f"import httpx\nprint(httpx.get('{base}/api/models/list').json())"),
            "openai_sdk": openai_snippet(services.instances.list()),
        },
    }


@router.get("/api/audit", dependencies=[policy(read="admin")])
async def audit(
    services: ServicesDep, limit: int = Query(default=100, ge=1, le=1000)
) -> dict[str, Any]:
    return {"entries": await services.audit.entries(limit)}


@router.get("/api/keys", dependencies=[policy(read="admin")])
async def list_keys(services: ServicesDep) -> dict[str, Any]:
    return {"keys": services.api_keys.list()}


@router.post("/api/keys", status_code=201)
async def create_key(body: KeyCreate, services: ServicesDep) -> dict[str, Any]:
    secret, info = services.api_keys.create(body.name, body.scopes)
    return {**info, "key": secret}


@router.delete("/api/keys/{key_id}", status_code=204)
async def delete_key(key_id: str, services: ServicesDep) -> Response:
    services.api_keys.delete(key_id)
    return Response(status_code=204)
