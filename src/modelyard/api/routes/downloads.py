"""Native download endpoints (SPEC §8): tasks, their commands and logs, and the Hugging Face
file listing with quantizations, sizes and fit verdicts."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Response, WebSocket
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from modelyard.api.deps import ServicesDep
from modelyard.api.designed import MODEL_SOURCE
from modelyard.api.policy import policy
from modelyard.api.routes.logs import FOLLOW_TAIL, follow_socket, whole_file
from modelyard.config import Settings
from modelyard.downloads.huggingface import DEFAULT_REVISION, GGUFChoice, list_gguf_files
from modelyard.downloads.specs import DownloadRequest
from modelyard.downloads.states import DownloadState
from modelyard.downloads.views import DownloadLog, DownloadView
from modelyard.runtimes.log_files import LogLevel
from modelyard.runtimes.resources import (
    FitVerdict,
    MemoryEstimate,
    SystemResources,
    check_disk,
    check_fits,
    estimate_memory,
    system_resources,
)
from modelyard.services import Services

router = APIRouter(tags=["downloads"], dependencies=[policy()])
LOG = "/api/downloads/{download_id}/log"


class DownloadList(BaseModel):
    downloads: list[DownloadView]


class HubFilePart(BaseModel):
    filename: str
    size: int | None
    sha256: str | None


class HubFileChoice(BaseModel):
    """One downloadable GGUF of a repo (a split model is one choice of several parts)."""

    filename: str
    size: int | None
    sha256: str | None
    quantization: str | None
    is_projector: bool
    parts: list[HubFilePart]
    memory: MemoryEstimate | None
    fit: FitVerdict | None
    disk: FitVerdict | None


class HubFiles(BaseModel):
    repo: str
    revision: str
    ctx_size: int
    files: list[HubFileChoice]


@router.get("/api/downloads/hf/files", responses=MODEL_SOURCE)
async def hf_files(
    services: ServicesDep,
    repo: str = Query(min_length=3, max_length=256, description="owner/name"),
    revision: str = Query(default=DEFAULT_REVISION, min_length=1, max_length=256),
    ctx_size: int = Query(default=0, ge=0, le=1_048_576, description="0: the default"),
) -> HubFiles:
    """A Hub repo's GGUF files: quantization, size, sha256, and whether each fits here."""
    settings = services.settings
    choices = await asyncio.to_thread(
        list_gguf_files, settings.hf_endpoint, settings.hf_token or None, repo, revision
    )
    resources = await asyncio.to_thread(system_resources, settings.resolved_models_dir)
    ctx = ctx_size or settings.default_ctx_size
    files = [_choice(c, settings, resources, ctx) for c in choices]
    return HubFiles(repo=repo, revision=revision, ctx_size=ctx, files=files)


def _choice(
    choice: GGUFChoice, settings: Settings, resources: SystemResources, ctx_size: int
) -> HubFileChoice:
    memory = fit = disk = None
    if choice.size is not None:
        if not choice.is_projector:
            memory = estimate_memory(
                None, file_size=choice.size, ctx_size=ctx_size, quantization=choice.quantization
            )
            fit = check_fits(memory, resources, settings.memory_margin_bytes)
        disk = check_disk(settings.resolved_models_dir, choice.size, settings.disk_margin_bytes)
    return HubFileChoice(
        filename=choice.filename,
        size=choice.size,
        sha256=choice.sha256,
        quantization=choice.quantization,
        is_projector=choice.is_projector,
        parts=[
            HubFilePart(filename=p.filename, size=p.size, sha256=p.sha256) for p in choice.parts
        ],
        memory=memory,
        fit=fit,
        disk=disk,
    )


@router.post(
    "/api/downloads",
    status_code=201,
    responses={
        200: {"model": DownloadView, "description": "The task for the same source."},
        **MODEL_SOURCE,
    },
)
async def create_download(
    body: DownloadRequest, services: ServicesDep, response: Response
) -> DownloadView:
    """Start a download: 201 with the new task, or 200 with the existing one for its source."""
    task, created = await services.downloads.submit(body)
    if not created:
        response.status_code = 200
    return task


@router.get("/api/downloads")
async def list_downloads(
    services: ServicesDep,
    state: DownloadState | None = Query(default=None, description="only tasks in this state"),
) -> DownloadList:
    """Every download, newest first."""
    return DownloadList(downloads=services.downloads.list_all(state))


@router.get("/api/downloads/{download_id}")
async def get_download(download_id: str, services: ServicesDep) -> DownloadView:
    return services.downloads.get(download_id)


@router.get(LOG)
async def download_log(
    download_id: str,
    services: ServicesDep,
    lines: int = Query(default=200, ge=1, le=5000),
    level: LogLevel | None = Query(default=None, description="this level and the ones above"),
    q: str = Query(default="", max_length=256, description="a text the lines contain"),
) -> DownloadLog:
    """The task's log file: ``{"path", "lines"}``, oldest line first."""
    return await asyncio.to_thread(services.downloads.log_tail, download_id, lines, level, q)


@router.get(LOG + "/file", response_class=StreamingResponse)
async def download_log_file(download_id: str, services: ServicesDep) -> StreamingResponse:
    """The whole current log (rotated copies stay on disk beside it) as a download."""
    return whole_file(services.downloads.log_file(download_id), download_id)


@router.websocket("/ws/downloads/{download_id}/log")
async def follow_download_log(ws: WebSocket, download_id: str) -> None:
    services: Services = ws.app.state.services
    await follow_socket(
        ws,
        lambda: services.downloads.log_file(download_id),
        lambda: services.downloads.log_tail(download_id, FOLLOW_TAIL).lines,
    )


@router.post("/api/downloads/{download_id}/pause")
async def pause_download(download_id: str, services: ServicesDep) -> DownloadView:
    """Stop a queued or running download, keeping its partial file."""
    return await services.downloads.pause(download_id)


@router.post("/api/downloads/{download_id}/resume")
async def resume_download(download_id: str, services: ServicesDep) -> DownloadView:
    """Queue a paused download again; it continues from its partial file."""
    return await services.downloads.resume(download_id)


@router.post("/api/downloads/{download_id}/cancel")
async def cancel_download(download_id: str, services: ServicesDep) -> DownloadView:
    """Stop a download for good and remove its partial file."""
    return await services.downloads.cancel(download_id)


@router.post("/api/downloads/{download_id}/retry")
async def retry_download(download_id: str, services: ServicesDep) -> DownloadView:
    """Queue a failed or cancelled download again."""
    return await services.downloads.retry(download_id)


@router.delete("/api/downloads/{download_id}", status_code=204)
async def delete_download(download_id: str, services: ServicesDep) -> Response:
    """Forget a download (stopping it first); a completed model file stays."""
    await services.downloads.delete(download_id)
    return Response(status_code=204)
