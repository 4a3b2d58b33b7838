"""Providers, instances, status and process control (SPEC §3, §8)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from modelyard.api.deps import ServicesDep
from modelyard.api.designed import MANAGED_PROCESS
from modelyard.api.policy import policy
from modelyard.config import ModelMode
from modelyard.errors import Conflict
from modelyard.providers.base import ProviderState
from modelyard.runtimes.health import ProviderStatus

router = APIRouter(tags=["providers"], dependencies=[policy()])


class InstanceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    base_url: str = Field(min_length=1, max_length=2048)
    managed: bool = False
    api_key: str | None = Field(default=None, max_length=4096)
    api_key_env: str | None = Field(default=None, max_length=128)
    model: str | None = Field(default=None, max_length=4096)
    mode: ModelMode | None = None
    command: list[str] | None = None
    ctx_size: int | None = Field(default=None, ge=0, le=1_048_576)


class InstancePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(default=None, min_length=1, max_length=2048)
    managed: bool | None = None
    api_key: str | None = Field(default=None, max_length=4096)
    api_key_env: str | None = Field(default=None, max_length=128)
    model: str | None = Field(default=None, max_length=4096)
    mode: ModelMode | None = None
    command: list[str] | None = None
    ctx_size: int | None = Field(default=None, ge=0, le=1_048_576)


class StatusList(BaseModel):
    providers: list[ProviderStatus]
    cache_ttl_ms: int
    age_ms: int


# TEMP: a static stand-in for the registry's labels and capability flags (the providers
# branch serves them from each provider module); dropped when that branch lands.
_FLAGS = ("manageable", "loads_models", "deletes_models", "pulls", "needs_api_key", "cloud")
_KINDS: dict[str, tuple[str, set[str]]] = {
    "ollama": ("Ollama", {"manageable", "loads_models", "deletes_models", "pulls"}),
    "llamacpp": ("llama.cpp", {"manageable"}),
    "lmstudio": ("LM Studio", {"loads_models"}),
    "openai_compat": ("OpenAI-compatible", set()),
    "openai": ("OpenAI", {"needs_api_key", "cloud"}),
    "anthropic": ("Anthropic", {"needs_api_key", "cloud"}),
}


def _kind(kind: str) -> dict[str, Any]:
    label, flags = _KINDS[kind]
    return {"kind": kind, "label": label, "capabilities": {f: f in flags for f in _FLAGS}}


@router.get("/api/providers/kinds")
async def provider_kinds() -> dict[str, Any]:
    return {"kinds": [_kind(kind) for kind in _KINDS]}


@router.get("/api/providers")
async def list_instances(services: ServicesDep) -> dict[str, Any]:
    instances = [i.public() for i in services.instances.list()]
    for instance in instances:
        kind = _kind(instance["provider"])
        instance.update(label=kind["label"], capabilities=kind["capabilities"])
    return {"instances": instances}


@router.post("/api/providers/{provider}/instances", status_code=201)
async def create_instance(
    provider: str, body: InstanceCreate, services: ServicesDep
) -> dict[str, Any]:
    instance = services.instances.create(provider, body.model_dump(exclude_none=True))
    services.health.poke(instance)
    return instance.public()


@router.patch("/api/providers/{provider}/instances/{instance_id}")
async def update_instance(
    provider: str, instance_id: str, body: InstancePatch, services: ServicesDep
) -> dict[str, Any]:
    """Edit an instance added through the API; a managed one must be stopped first."""
    instance = services.instances.deletable(provider, instance_id)
    if instance.config.managed:
        check = await asyncio.to_thread(services.processes.check, instance.key)
        if check.alive:
            raise Conflict(
                f"{instance.key} is running",
                code="instance_running",
                hint="Stop it first, then edit it.",
            )
    updated = services.instances.update(provider, instance_id, body.model_dump(exclude_unset=True))
    services.health.forget(instance)
    services.health.poke(updated)
    return updated.public()


@router.delete(
    "/api/providers/{provider}/instances/{instance_id}", status_code=204, responses=MANAGED_PROCESS
)
async def delete_instance(provider: str, instance_id: str, services: ServicesDep) -> Response:
    instance = services.instances.deletable(provider, instance_id)
    if instance.config.managed:
        await services.control.stop(instance)
    services.instances.delete(provider, instance_id)
    services.health.forget(instance)
    services.bus.publish("provider.removed", {"provider": provider, "instance_id": instance_id})
    return Response(status_code=204)


@router.get("/api/providers/status", response_model=StatusList)
async def provider_statuses(services: ServicesDep, refresh: bool = False) -> JSONResponse:
    # Serialised by hand from JSON made once per check: the cached answer must stay cheap.
    statuses = await services.health.statuses(refresh=refresh)
    return JSONResponse(
        {
            "providers": [services.health.as_json(s) for s in statuses],
            "cache_ttl_ms": services.settings.status_cache_ttl_ms,
            "age_ms": services.health.age_ms(statuses),
        }
    )


@router.get("/api/providers/{provider}/instances/{instance_id}/status")
async def instance_status(
    provider: str, instance_id: str, services: ServicesDep, refresh: bool = False
) -> ProviderStatus:
    return await services.health.status(
        services.instances.get(provider, instance_id), refresh=refresh
    )


@router.get("/api/providers/{provider}/instances/{instance_id}/history")
async def instance_history(
    provider: str, instance_id: str, services: ServicesDep
) -> dict[str, Any]:
    instance = services.instances.get(provider, instance_id)
    return {"checks": [s.model_dump(mode="json") for s in services.health.history(instance)]}


@router.get("/api/providers/{provider}/instances/{instance_id}/logs")
async def instance_logs(
    provider: str,
    instance_id: str,
    services: ServicesDep,
    lines: int = Query(default=200, ge=1, le=5000),
) -> dict[str, Any]:
    instance = services.instances.get(provider, instance_id)
    path = services.processes.log_path(instance.key)
    return {
        "path": str(path),
        "lines": services.processes.log_tail(instance.key, lines)
        if instance.config.managed
        else [],
    }


@router.post("/api/providers/{provider}/instances/{instance_id}/start", responses=MANAGED_PROCESS)
async def start_instance(provider: str, instance_id: str, services: ServicesDep) -> ProviderStatus:
    return await services.control.start(services.instances.get(provider, instance_id))


@router.post("/api/providers/{provider}/instances/{instance_id}/stop", responses=MANAGED_PROCESS)
async def stop_instance(provider: str, instance_id: str, services: ServicesDep) -> ProviderStatus:
    return await services.control.stop(services.instances.get(provider, instance_id))


@router.post("/api/providers/{provider}/instances/{instance_id}/restart", responses=MANAGED_PROCESS)
async def restart_instance(
    provider: str, instance_id: str, services: ServicesDep
) -> ProviderStatus:
    return await services.control.restart(services.instances.get(provider, instance_id))


@router.get("/api/models/status")
async def models_status(services: ServicesDep) -> dict[str, dict[str, Any]]:
    """Compatibility: per provider, whether any instance runs and its version."""
    result: dict[str, dict[str, Any]] = {}
    for status in await services.health.statuses():
        entry = result.setdefault(status.provider, {"running": False, "version": None})
        if status.state is ProviderState.RUNNING and not entry["running"]:
            entry.update(running=True, version=status.version)
    return result


@router.get("/api/models/health")
async def models_health(services: ServicesDep) -> dict[str, Any]:
    """Compatibility: healthy when something runs and nothing is broken."""
    providers: dict[str, dict[str, Any]] = {}
    for status in await services.health.statuses():
        entry = providers.setdefault(
            status.provider, {"status": "unavailable", "running": 0, "instances": 0, "errors": []}
        )
        entry["instances"] += 1
        if status.state is ProviderState.RUNNING:
            entry["running"] += 1
        elif status.state in (ProviderState.ERROR, ProviderState.DEGRADED):
            entry["errors"].append(
                {"instance_id": status.instance_id, "reason_code": status.reason_code}
            )
    for entry in providers.values():
        entry["status"] = (
            "degraded" if entry["errors"] else ("healthy" if entry["running"] else "unavailable")
        )
    broken = any(e["errors"] for e in providers.values())
    running = any(e["running"] for e in providers.values())
    return {"status": "healthy" if running and not broken else "degraded", "providers": providers}
