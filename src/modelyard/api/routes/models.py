"""The model catalog and lifecycle API (SPEC §4, §8).

``GET /api/models/list`` and ``/search`` answer from the store and skip FastAPI's generic
encoder (it costs more than the query for a thousand models). ``DELETE
/api/models/{provider}/{model_name:path}`` catches every deeper path, so this router is
included after the other ``/api/models/...`` routers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from modelyard.api.deps import ServicesDep
from modelyard.api.designed import MODEL_RECREATE, MODEL_RUNTIME, MODEL_SOURCE
from modelyard.api.policy import COMPATIBILITY, policy
from modelyard.downloads.views import DownloadView
from modelyard.errors import InvalidInput
from modelyard.models import recommended
from modelyard.models.details import ModelDetails, ResourcesReport
from modelyard.models.store import SearchQuery, SortField, SortOrder
from modelyard.models.types import ROW_STATUSES, BatchItem, Model
from modelyard.models.types import ModelRef as Ref
from modelyard.providers.registry import registry

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


class ModelList(BaseModel):
    models: list[Model]


class ModelPageOut(BaseModel):
    models: list[Model]
    total: int
    page: int
    page_size: int


class SyncErrorOut(BaseModel):
    provider: str
    instance_id: str
    name: str | None = Field(default=None, description="a model listed with this error")
    code: str
    detail: str
    hint: str | None = Field(default=None, description="present when there is one")


class SyncOut(BaseModel):
    added: int
    updated: int
    removed: int
    unchanged: int
    errors: list[SyncErrorOut]


@dataclass(slots=True)
class RecreatedOut(Model):
    download: dict[str, Any]  # the download task


class BatchOut(BaseModel):
    batch_id: str
    action: str
    results: list[BatchItem]
    ok: int
    failed: int


class DeletedOut(BaseModel):
    success: bool
    provider: str
    instance_id: str
    name: str
    message: str


class AvailableList(BaseModel):
    models: list[recommended.AvailableModel]


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


@router.get("/api/models/list", response_model=ModelList, dependencies=[COMPATIBILITY])
async def list_models(services: ServicesDep) -> Response:
    """Compatibility: every model of every instance, ``{"models": [...]}``. An unchanged
    catalog answers on the event loop; a rebuild (a store query) runs in a thread."""
    body = services.catalog.cached_list_json()
    if body is None:
        body = await asyncio.to_thread(services.catalog.list_json)
    return Response(body, media_type="application/json")


class EvictionOut(BaseModel):
    reason: str = Field(description="ttl, evicted, requested, died, load_failed or runtime")
    at: float = Field(description="epoch seconds")
    for_model: str | None = Field(description="the model it made room for (evicted)")


class ScheduledModelOut(BaseModel):
    key: str = Field(description="provider/instance/name")
    state: Literal["unloaded", "loading", "loaded", "unloading"]
    in_flight: int
    queued: int
    estimate_bytes: int
    load_progress: float | None
    ttl_left_s: float | None
    pinned: bool
    loaded_at: float | None
    last_used_at: float | None
    last_eviction: EvictionOut | None
    last_error: str | None


class ScheduleOut(BaseModel):
    models: list[ScheduledModelOut]


@router.get("/api/models/schedule", response_model=ScheduleOut)
async def model_schedule(services: ServicesDep) -> ScheduleOut:
    """The scheduler's view of every model it has decided about (docs/GATEWAY.md): state
    (``unloaded``, ``loading``, ``loaded``, ``unloading``), requests in flight and queued,
    TTL left, the last eviction and why. ``model.schedule`` events carry the changes."""
    views = services.gateway.scheduler.snapshot()
    return ScheduleOut.model_validate({"models": [view.wire() for view in views]})


@router.get("/api/models/search", response_model=ModelPageOut)
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
    providers = tuple(registry.get(name).kind for name in _csv(provider, None, "provider"))
    if min_size is not None and max_size is not None and min_size > max_size:
        raise InvalidInput(
            "min_size is larger than max_size",
            code="invalid_size_range",
            hint="Give min_size <= max_size (bytes).",
        )
    query = SearchQuery(
        q=q.strip(),
        status=_csv(status, tuple(s.value for s in ROW_STATUSES), "status"),
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
    return JSONResponse(services.catalog.search(query).wire())


@router.get(
    "/api/models/available", dependencies=[COMPATIBILITY], response_model_exclude_unset=True
)
def available_models(services: ServicesDep) -> AvailableList:
    """Compatibility: the recommended models, each with ``installed``."""
    return AvailableList(models=recommended.with_installed(services.catalog.names()))


@router.post("/api/models/install", responses=MODEL_SOURCE)
async def install_recommended(body: InstallBody, services: ServicesDep) -> DownloadView:
    """Download a recommended model; answers with the download task."""
    item = recommended.find(body.id)
    request = item.download
    if body.instance_id and registry.get(item.provider).capabilities.pulls:
        request = request.model_copy(update={"instance_id": body.instance_id})  # who pulls it
    return await services.lifecycle.install(request)


@router.post("/api/models/sync", response_model=SyncOut)
async def sync_models(services: ServicesDep) -> JSONResponse:
    """List every instance now: ``{"added", "updated", "removed", "unchanged", "errors"}``."""
    return JSONResponse((await services.catalog.sync()).wire())


@router.get("/api/models/details", responses=MODEL_RUNTIME, response_model=ModelDetails)
async def model_details(
    services: ServicesDep,
    provider: str = Query(min_length=1, max_length=32),
    name: str = Query(min_length=1, max_length=1024),
    instance_id: str | None = Query(default=None, min_length=1, max_length=64),
) -> JSONResponse:
    """The model with GGUF metadata, memory estimate, fit verdict and recorded source."""
    details = await services.lifecycle.details(Ref(provider, name, instance_id))
    return JSONResponse(details.wire())


@router.post("/api/models/start", responses=MODEL_RUNTIME, response_model=Model)
async def start_model(body: StartBody, services: ServicesDep) -> JSONResponse:
    """Load a model (memory check first; ``force`` skips it); answers with the model."""
    model = await services.lifecycle.start(
        Ref(body.provider, body.name, body.instance_id),
        force=body.force,
        wait=body.wait,
        ctx_size=body.ctx_size,
    )
    return JSONResponse(model.wire())


@router.post("/api/models/stop", responses=MODEL_RUNTIME, response_model=Model)
async def stop_model(body: ModelRef, services: ServicesDep) -> JSONResponse:
    """Unload a model; answers with the model."""
    model = await services.lifecycle.stop(Ref(body.provider, body.name, body.instance_id))
    return JSONResponse(model.wire())


@router.post("/api/models/recreate", responses=MODEL_RECREATE, response_model=RecreatedOut)
async def recreate_model(body: ModelRef, services: ServicesDep) -> JSONResponse:
    """Delete a model and download it again from its recorded source."""
    ref = Ref(body.provider, body.name, body.instance_id)
    return JSONResponse((await services.lifecycle.recreate(ref)).wire())


@router.post("/api/models/batch", response_model=BatchOut)
async def batch_models(body: BatchBody, services: ServicesDep) -> JSONResponse:
    """One action on many models: a result per item, ``batch.progress`` events meanwhile."""
    refs = [Ref(m.provider, m.name, m.instance_id) for m in body.models]
    result = await services.lifecycle.batch(body.action, refs, force=body.force)
    return JSONResponse(result.wire())


@router.delete(
    "/api/models/{provider}/{model_name:path}",
    responses=MODEL_RUNTIME,
    response_model=DeletedOut,
    dependencies=[COMPATIBILITY],
)
async def delete_model(
    provider: str,
    model_name: str,
    services: ServicesDep,
    instance_id: str | None = Query(default=None, min_length=1, max_length=64),
) -> JSONResponse:
    """Delete a model (names may contain '/' and ':'); a running GGUF answers 409."""
    deleted = await services.lifecycle.delete(Ref(provider, model_name, instance_id))
    return JSONResponse(deleted.wire())


@router.get("/api/system/resources")
async def system_resources(services: ServicesDep) -> ResourcesReport:
    """Disk of the models directory, RAM, CPU, NVIDIA GPUs and the running models' memory."""
    return await asyncio.to_thread(services.lifecycle.resources)
