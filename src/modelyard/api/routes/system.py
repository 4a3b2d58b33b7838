"""Metrics, connection info, audit log and API keys."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from modelyard import __version__
from modelyard.api.deps import ServicesDep

router = APIRouter(tags=["system"])


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    scopes: list[str] = Field(default_factory=lambda: ["read"])


@router.get("/metrics", include_in_schema=True)
async def metrics(services: ServicesDep) -> Response:
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/version")
async def version() -> dict[str, str]:
    return {"version": __version__}


@router.get("/api/connection-info")
async def connection_info(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Base URLs and copy-paste snippets for talking to modelyard and its instances."""
    base = str(request.base_url).rstrip("/")
    endpoints = [
        {"provider": i.config.provider.value, "id": i.config.id, "base_url": i.config.base_url}
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
            "openai_sdk": (
                "from openai import OpenAI\n"
                "client = OpenAI(base_url='http://127.0.0.1:11434/v1', api_key='unused')\n"
                "print(client.models.list())"
            ),
        },
    }


@router.get("/api/audit")
async def audit(
    services: ServicesDep, limit: int = Query(default=100, ge=1, le=1000)
) -> dict[str, Any]:
    return {"entries": await services.audit.entries(limit)}


@router.get("/api/keys")
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
