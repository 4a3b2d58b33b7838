"""Providers, instances, status and process control (SPEC §3, §8)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from modelyard.api.deps import ServicesDep
from modelyard.api.designed import MANAGED_PROCESS
from modelyard.api.policy import COMPATIBILITY, policy
from modelyard.providers.base import ProviderState
from modelyard.providers.registry import registry
from modelyard.runtimes.health import MISSING_API_KEY, ProviderStatus
from modelyard.runtimes.instances import InstanceChanges, InstanceFields, InstanceView

router = APIRouter(tags=["providers"], dependencies=[policy()])
Overall = Literal["healthy", "degraded"]


class InstanceList(BaseModel):
    instances: list[InstanceView]


class ProviderKindView(BaseModel):
    kind: str
    label: str
    capabilities: dict[str, bool]


class KindList(BaseModel):
    kinds: list[ProviderKindView]


class StatusList(BaseModel):
    providers: list[ProviderStatus]
    cache_ttl_ms: int
    age_ms: int


class CheckList(BaseModel):
    checks: list[ProviderStatus]


class RunningVersion(BaseModel):
    running: bool
    version: str | None


class ProviderErrorRef(BaseModel):
    instance_id: str
    reason_code: str | None


class ProviderHealth(BaseModel):
    status: Literal["healthy", "degraded", "unavailable"]
    running: int
    instances: int
    errors: list[ProviderErrorRef]


class HealthAnswer(BaseModel):
    """Seed 000's shape: one boolean per provider kind that can run."""

    status: Overall
    providers: dict[str, bool]


class ProvidersHealth(BaseModel):
    """The per-provider view behind ``GET /api/models/health``."""

    status: Overall
    providers: dict[str, ProviderHealth]


@router.get("/api/providers")
async def list_instances(services: ServicesDep) -> InstanceList:
    return InstanceList(instances=services.instance_service.views())


@router.get("/api/providers/kinds")
async def list_kinds() -> KindList:
    """Every provider kind this modelyard knows, with what its runtimes can do."""
    kinds = [
        ProviderKindView(kind=p.kind, label=p.label, capabilities=p.capabilities.wire())
        for p in registry
    ]
    return KindList(kinds=kinds)


@router.post("/api/providers/{provider}/instances", status_code=201)
async def create_instance(
    provider: str, body: InstanceFields, services: ServicesDep
) -> InstanceView:
    return services.instance_service.create(provider, body)


@router.patch("/api/providers/{provider}/instances/{instance_id}")
async def update_instance(
    provider: str, instance_id: str, body: InstanceChanges, services: ServicesDep
) -> InstanceView:
    """Edit an instance added through the API; a managed one must be stopped first."""
    return await services.instance_service.update(provider, instance_id, body)


@router.delete(
    "/api/providers/{provider}/instances/{instance_id}", status_code=204, responses=MANAGED_PROCESS
)
async def delete_instance(provider: str, instance_id: str, services: ServicesDep) -> Response:
    await services.instance_service.delete(provider, instance_id)
    return Response(status_code=204)


@router.get("/api/providers/status", response_model=StatusList)
async def provider_statuses(services: ServicesDep, refresh: bool = False) -> JSONResponse:
    # Serialised by hand from JSON made once per check: the cached answer must stay cheap.
    statuses = await services.health.statuses(refresh=refresh)
    age_ms = services.health.age_ms(statuses)
    return JSONResponse(
        {
            "providers": [services.health.as_json(s) for s in statuses],
            # Seed 001's meaning: how long until this answer is refreshed (its oldest entry
            # expires); age_ms says how old it is.
            "cache_ttl_ms": max(0, services.settings.status_cache_ttl_ms - age_ms),
            "age_ms": age_ms,
        }
    )


@router.get("/api/providers/{provider}/instances/{instance_id}/status")
async def instance_status(
    provider: str, instance_id: str, services: ServicesDep, refresh: bool = False
) -> ProviderStatus:
    return await services.instance_service.status(provider, instance_id, refresh=refresh)


@router.get("/api/providers/{provider}/instances/{instance_id}/history")
async def instance_history(provider: str, instance_id: str, services: ServicesDep) -> CheckList:
    return CheckList(checks=services.instance_service.history(provider, instance_id))


@router.post("/api/providers/{provider}/instances/{instance_id}/start", responses=MANAGED_PROCESS)
async def start_instance(provider: str, instance_id: str, services: ServicesDep) -> ProviderStatus:
    return await services.instance_service.start(provider, instance_id)


@router.post("/api/providers/{provider}/instances/{instance_id}/stop", responses=MANAGED_PROCESS)
async def stop_instance(provider: str, instance_id: str, services: ServicesDep) -> ProviderStatus:
    return await services.instance_service.stop(provider, instance_id)


@router.post("/api/providers/{provider}/instances/{instance_id}/restart", responses=MANAGED_PROCESS)
async def restart_instance(
    provider: str, instance_id: str, services: ServicesDep
) -> ProviderStatus:
    return await services.instance_service.restart(provider, instance_id)


@router.get("/api/models/status", dependencies=[COMPATIBILITY])
async def models_status(services: ServicesDep) -> dict[str, RunningVersion]:
    """Compatibility: per provider, whether any instance runs and its version."""
    result: dict[str, RunningVersion] = {}
    for status in await services.health.statuses():
        entry = result.setdefault(status.provider, RunningVersion(running=False, version=None))
        if status.state is ProviderState.RUNNING and not entry.running:
            entry.running, entry.version = True, status.version
    return result


def _kinds_health(statuses: list[ProviderStatus]) -> dict[str, ProviderHealth]:
    """Per provider kind that has an instance able to run (a cloud API without a key cannot)."""
    kinds: dict[str, ProviderHealth] = {}
    for status in statuses:
        if status.reason_code == MISSING_API_KEY:
            continue
        entry = kinds.setdefault(
            status.provider,
            ProviderHealth(status="unavailable", running=0, instances=0, errors=[]),
        )
        entry.instances += 1
        if status.state is ProviderState.RUNNING:
            entry.running += 1
        elif status.state in (ProviderState.ERROR, ProviderState.DEGRADED):
            entry.errors.append(
                ProviderErrorRef(instance_id=status.instance_id, reason_code=status.reason_code)
            )
    for entry in kinds.values():
        entry.status = (
            "degraded" if entry.errors else ("healthy" if entry.running else "unavailable")
        )
    return kinds


def _overall(kinds: dict[str, ProviderHealth]) -> Overall:
    """Healthy when every listed kind has a running instance (and at least one is listed)."""
    return "healthy" if kinds and all(k.running for k in kinds.values()) else "degraded"


@router.get("/api/models/health", dependencies=[COMPATIBILITY])
async def models_health(services: ServicesDep) -> HealthAnswer:
    """Compatibility (seed 000): ``true`` for a kind when one of its instances is RUNNING."""
    kinds = _kinds_health(await services.health.statuses())
    return HealthAnswer(
        status=_overall(kinds), providers={kind: bool(k.running) for kind, k in kinds.items()}
    )


@router.get("/api/providers/health")
async def providers_health(services: ServicesDep) -> ProvidersHealth:
    """The same judgement per kind with its counts and the instances that are broken."""
    kinds = _kinds_health(await services.health.statuses())
    return ProvidersHealth(status=_overall(kinds), providers=kinds)
