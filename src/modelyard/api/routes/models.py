"""The model catalog and lifecycle API (SPEC §4, §8).

``GET /api/models/list`` and ``/search`` answer from the store and skip FastAPI's generic
encoder (it costs more than the query for a thousand models). ``DELETE
/api/models/{provider}/{model_name:path}`` catches every deeper path, so this router is
included after the other ``/api/models/...`` routers.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from modelyard.api.deps import ServicesDep
from modelyard.api.designed import MODEL_RECREATE, MODEL_RUNTIME, MODEL_SOURCE
from modelyard.api.policy import COMPATIBILITY, policy
from modelyard.config import ProviderKind
from modelyard.downloads.views import DownloadView
from modelyard.errors import InvalidInput
from modelyard.models import recommended
from modelyard.models.store import STATUSES, SearchQuery, SortField, SortOrder
from modelyard.providers.registry import parse_provider

router = APIRouter(tags=["models"], dependencies=[policy()])
_MAX_SIZE = 2**60


class ModelRef(BaseModel):
    """One model: provider and name, and the instance when the name alone is ambiguous."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=1024)
    instance_id: str | None = Field(default=None, min_length=1, max_length=64)


class StartBody(ModelRef):
    force: bool = Field(default=False, description="Start even if the memory check fails.")
    wait: bool = Field(default=True, description="Answer once the model is loaded.")
    ctx_size: int | None = Field(default=None, ge=256, le=1_048_576)


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["start", "stop", "delete"]
    models: list[ModelRef] = Field(min_length=1, max_length=500)
    force: bool = False


class InstallBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128)
    instance_id: str | None = Field(default=None, min_length=1, max_length=64)


def _csv(value: str | None, allowed: tuple[str, ...] | None, what: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in (value or "").split(",") if v.strip())
    bad = [v for v in items if allowed is not None and v not in allowed]
    if bad:
        raise InvalidInput(
            f"unknown {what} {bad[0]!r}",
            code=f"invalid_{what}",
            hint=f"Use one or more of: {', '.join(allowed or ())} (comma-separated).",
        )
    return items


@router.get("/api/models/list", dependencies=[COMPATIBILITY])
async def list_models(services: ServicesDep) -> Response:
    """Compatibility: every model of every instance, ``{"models": [...]}``. An unchanged
    catalog answers on the event loop; a rebuild (a store query) runs in a thread."""
    body = services.catalog.cached_list_json()
    if body is None:
        body = await asyncio.to_thread(services.catalog.list_json)
    return Response(body, media_type="application/json")


@router.get("/api/models/search")
def search_models(
    services: ServicesDep,
    q: str = Query(default="", max_length=256, description="Name substring (any case)."),
    status: str | None = Query(default=None, description="Comma-separated statuses."),
    provider: str | None = Query(default=None, description="Comma-separated providers."),
    source: str | None = Query(default=None, description="ollama, local, hf, url, … (csv)."),
    instance_id: str = Query(default="", max_length=64),
    mode: Literal["", "llm", "embed", "rerank"] = "",
    min_size: int | None = Query(default=None, ge=0, le=_MAX_SIZE),
    max_size: int | None = Query(default=None, ge=0, le=_MAX_SIZE),
    sort: SortField = "name",
    order: SortOrder = "asc",
    page: int = Query(default=1, ge=1, le=1_000_000),
    page_size: int = Query(default=50, ge=1, le=500),
) -> JSONResponse:
    """A page of models matching every given filter, sorted."""
    providers = _csv(provider, None, "provider")
    for name in providers:
        parse_provider(name)
    if min_size is not None and max_size is not None and min_size > max_size:
        raise InvalidInput(
            "min_size is larger than max_size",
            code="invalid_size_range",
            hint="Give min_size <= max_size (bytes).",
        )
    query = SearchQuery(
        q=q.strip(),
        status=_csv(status, STATUSES, "status"),
        provider=providers,
        source=_csv(source, None, "source"),
        instance_id=instance_id,
        mode=mode,
        min_size=min_size,
        max_size=max_size,
        sort=sort,
        order=order,
        page=page,
        page_size=page_size,
    )
    return JSONResponse(services.catalog.search(query))


@router.get("/api/models/available", dependencies=[COMPATIBILITY])
def available_models(services: ServicesDep) -> dict[str, Any]:
    """Compatibility: the recommended models, each with ``installed``."""
    names = services.catalog.store.names([k.value for k in ProviderKind])
    return {"models": recommended.with_installed(names)}


@router.post("/api/models/install", responses=MODEL_SOURCE)
async def install_recommended(body: InstallBody, services: ServicesDep) -> DownloadView:
    """Download a recommended model; answers with the download task."""
    item = recommended.find(body.id)
    request = dict(item.download)
    if body.instance_id and item.provider is ProviderKind.OLLAMA:
        request["instance_id"] = body.instance_id
    return await services.lifecycle.install(request)


@router.post("/api/models/sync")
async def sync_models(services: ServicesDep) -> dict[str, Any]:
    """List every instance now: ``{"added", "updated", "removed", "unchanged", "errors"}``."""
    return await services.catalog.sync()


@router.get("/api/models/details", responses=MODEL_RUNTIME)
async def model_details(
    services: ServicesDep,
    provider: str = Query(min_length=1, max_length=32),
    name: str = Query(min_length=1, max_length=1024),
    instance_id: str | None = Query(default=None, min_length=1, max_length=64),
) -> dict[str, Any]:
    """The model with GGUF metadata, memory estimate, fit verdict and recorded source."""
    return await services.lifecycle.details(provider, name, instance_id)


@router.post("/api/models/start", responses=MODEL_RUNTIME)
async def start_model(body: StartBody, services: ServicesDep) -> dict[str, Any]:
    """Load a model (memory check first; ``force`` skips it); answers with the model."""
    return await services.lifecycle.start(
        body.provider,
        body.name,
        body.instance_id,
        force=body.force,
        wait=body.wait,
        ctx_size=body.ctx_size,
    )


@router.post("/api/models/stop", responses=MODEL_RUNTIME)
async def stop_model(body: ModelRef, services: ServicesDep) -> dict[str, Any]:
    """Unload a model; answers with the model."""
    return await services.lifecycle.stop(body.provider, body.name, body.instance_id)


@router.post("/api/models/recreate", responses=MODEL_RECREATE)
async def recreate_model(body: ModelRef, services: ServicesDep) -> dict[str, Any]:
    """Delete a model and download it again from its recorded source."""
    return await services.lifecycle.recreate(body.provider, body.name, body.instance_id)


@router.post("/api/models/batch")
async def batch_models(body: BatchBody, services: ServicesDep) -> dict[str, Any]:
    """One action on many models: a result per item, ``batch.progress`` events meanwhile."""
    items = [m.model_dump() for m in body.models]
    return await services.lifecycle.batch(body.action, items, force=body.force)


@router.delete(
    "/api/models/{provider}/{model_name:path}",
    responses=MODEL_RUNTIME,
    dependencies=[COMPATIBILITY],
)
async def delete_model(
    provider: str,
    model_name: str,
    services: ServicesDep,
    instance_id: str | None = Query(default=None, min_length=1, max_length=64),
) -> dict[str, Any]:
    """Delete a model (names may contain '/' and ':'); a running GGUF answers 409."""
    return await services.lifecycle.delete(provider, model_name, instance_id)


@router.get("/api/system/resources")
async def system_resources(services: ServicesDep) -> dict[str, Any]:
    """Disk of the models directory, RAM, CPU, NVIDIA GPUs and the running models' memory."""
    return await asyncio.to_thread(services.lifecycle.resources)
