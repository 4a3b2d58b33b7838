"""Native download endpoints (SPEC §8): tasks, their commands and logs, and the Hugging Face
file listing with quantizations, sizes and fit verdicts."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from modelyard.api.deps import ServicesDep
from modelyard.api.designed import MODEL_SOURCE
from modelyard.api.policy import policy
from modelyard.config import Settings
from modelyard.downloads.huggingface import DEFAULT_REVISION, GGUFChoice, list_gguf_files
from modelyard.downloads.specs import DownloadRequest
from modelyard.downloads.tasks import State
from modelyard.runtimes.resources import (
    SystemResources,
    check_disk,
    check_fits,
    estimate_memory,
    system_resources,
)

router = APIRouter(tags=["downloads"], dependencies=[policy()])


@router.get("/api/downloads/hf/files", responses=MODEL_SOURCE)
async def hf_files(
    services: ServicesDep,
    repo: str = Query(min_length=3, max_length=256, description="owner/name"),
    revision: str = Query(default=DEFAULT_REVISION, min_length=1, max_length=256),
    ctx_size: int = Query(default=0, ge=0, le=1_048_576, description="0: the default"),
) -> dict[str, Any]:
    """A Hub repo's GGUF files: quantization, size, sha256, and whether each fits here."""
    settings = services.settings
    choices = await asyncio.to_thread(
        list_gguf_files, settings.hf_endpoint, settings.hf_token or None, repo, revision
    )
    resources = await asyncio.to_thread(system_resources, settings.resolved_models_dir)
    ctx = ctx_size or settings.default_ctx_size
    return {
        "repo": repo,
        "revision": revision,
        "ctx_size": ctx,
        "files": [_choice(c, settings, resources, ctx) for c in choices],
    }


def _choice(
    choice: GGUFChoice, settings: Settings, resources: SystemResources, ctx_size: int
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "filename": choice.filename,
        "size": choice.size,
        "sha256": choice.sha256,
        "quantization": choice.quantization,
        "is_projector": choice.is_projector,
        "parts": [
            {"filename": p.filename, "size": p.size, "sha256": p.sha256} for p in choice.parts
        ],
        "memory": None,
        "fit": None,
        "disk": None,
    }
    if choice.size is None:
        return item
    if not choice.is_projector:
        estimate = estimate_memory(
            None, file_size=choice.size, ctx_size=ctx_size, quantization=choice.quantization
        )
        fit = check_fits(estimate, resources, settings.memory_margin_bytes)
        item["memory"] = estimate.to_dict()
        item["fit"] = fit.to_dict()
    disk = check_disk(settings.resolved_models_dir, choice.size, settings.disk_margin_bytes)
    item["disk"] = disk.to_dict()
    return item


@router.post("/api/downloads", status_code=201, responses=MODEL_SOURCE)
async def create_download(body: DownloadRequest, services: ServicesDep) -> JSONResponse:
    """Start a download: 201 with the new task, or 200 with the existing one for its source."""
    task, created = await services.downloads.submit(body)
    return JSONResponse(task, status_code=201 if created else 200)


@router.get("/api/downloads")
async def list_downloads(
    services: ServicesDep,
    state: State | None = Query(default=None, description="only tasks in this state"),
) -> dict[str, Any]:
    """Every download, newest first."""
    return {"downloads": services.downloads.list_all(state.value if state else None)}


@router.get("/api/downloads/{download_id}")
async def get_download(download_id: str, services: ServicesDep) -> dict[str, Any]:
    return services.downloads.get(download_id)


@router.get("/api/downloads/{download_id}/log")
async def download_log(
    download_id: str, services: ServicesDep, lines: int = Query(default=200, ge=1, le=5000)
) -> dict[str, Any]:
    """The task's log file: ``{"path", "lines"}``, oldest line first."""
    return services.downloads.log_tail(download_id, lines)


@router.post("/api/downloads/{download_id}/pause")
async def pause_download(download_id: str, services: ServicesDep) -> dict[str, Any]:
    """Stop a queued or running download, keeping its partial file."""
    return await services.downloads.pause(download_id)


@router.post("/api/downloads/{download_id}/resume")
async def resume_download(download_id: str, services: ServicesDep) -> dict[str, Any]:
    """Queue a paused download again; it continues from its partial file."""
    return await services.downloads.resume(download_id)


@router.post("/api/downloads/{download_id}/cancel")
async def cancel_download(download_id: str, services: ServicesDep) -> dict[str, Any]:
    """Stop a download for good and remove its partial file."""
    return await services.downloads.cancel(download_id)


@router.post("/api/downloads/{download_id}/retry")
async def retry_download(download_id: str, services: ServicesDep) -> dict[str, Any]:
    """Queue a failed or cancelled download again."""
    return await services.downloads.retry(download_id)


@router.delete("/api/downloads/{download_id}", status_code=204)
async def delete_download(download_id: str, services: ServicesDep) -> Response:
    """Forget a download (stopping it first); a completed model file stays."""
    await services.downloads.delete(download_id)
    return Response(status_code=204)
