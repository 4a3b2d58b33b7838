"""Container instances (issue 23): resource use, the container's log (tail, follow, download),
removing the container and recreating it with another tag of its configured image."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from modelyard.api.deps import ServicesDep
from modelyard.api.designed import MANAGED_PROCESS
from modelyard.api.policy import policy
from modelyard.runtimes.container_ops import ContainerUse
from modelyard.runtimes.health import ProviderStatus

router = APIRouter(tags=["containers"], dependencies=[policy()])
INSTANCE = "/api/providers/{provider}/instances/{instance_id}/container"


class ContainerUseView(BaseModel):
    provider: str
    instance_id: str
    name: str
    image: str
    status: str  # Docker's (running, exited, paused, restarting…), or absent
    cpu_percent: float | None
    memory_bytes: int | None
    memory_limit_bytes: int | None
    pids: int | None

    @classmethod
    def of(cls, use: ContainerUse) -> ContainerUseView:
        provider, _, instance_id = use.key.partition("/")
        s = use.stats
        return cls(
            provider=provider,
            instance_id=instance_id,
            name=use.name,
            image=use.image,
            status=use.status,
            cpu_percent=s.cpu_percent if s else None,
            memory_bytes=s.memory_bytes if s else None,
            memory_limit_bytes=s.memory_limit_bytes if s else None,
            pids=s.pids if s else None,
        )


class ContainerUseList(BaseModel):
    containers: list[ContainerUseView]


class Recreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tag: str | None = Field(default=None, max_length=128)


@router.get("/api/containers")
async def container_use(services: ServicesDep) -> ContainerUseList:
    """Every container instance with its resource use (a sample takes Docker about a second)."""
    uses = await services.containers.all_stats()
    return ContainerUseList(containers=[ContainerUseView.of(u) for u in uses])


@router.get(f"{INSTANCE}/stats")
async def container_stats(
    provider: str, instance_id: str, services: ServicesDep
) -> ContainerUseView:
    return ContainerUseView.of(await services.containers.stats(provider, instance_id))


@router.get(f"{INSTANCE}/logs", response_class=PlainTextResponse)
async def container_logs(
    provider: str,
    instance_id: str,
    services: ServicesDep,
    tail: int = Query(default=200, ge=1, le=100_000),
    follow: bool = False,
    download: bool = False,
) -> Response:
    """The container's output: the last ``tail`` lines, then (``follow``) each new line until
    it stops; ``download`` as a file."""
    headers = {}
    if download:
        name = f"{provider}-{instance_id}.log"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    if follow:
        stream = await services.containers.follow(provider, instance_id, tail)
        return StreamingResponse(stream, media_type="text/plain; charset=utf-8", headers=headers)
    lines = services.containers.log_lines(provider, instance_id, tail)
    body = "".join(f"{line}\n" for line in lines)
    return PlainTextResponse(body, headers=headers)


@router.delete(f"{INSTANCE}", status_code=204)
async def remove_container(provider: str, instance_id: str, services: ServicesDep) -> Response:
    await services.containers.remove(provider, instance_id)
    return Response(status_code=204)


@router.post(f"{INSTANCE}/recreate", responses=MANAGED_PROCESS)
async def recreate_container(
    provider: str, instance_id: str, body: Recreate, services: ServicesDep
) -> ProviderStatus:
    """Stop and remove the container, then start a new one from ``tag`` of the configured
    image (the configured tag when none is given); the image must be on this machine."""
    return await services.containers.recreate(provider, instance_id, body.tag)
