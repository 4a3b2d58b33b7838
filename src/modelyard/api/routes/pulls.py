"""Compatibility download endpoints (SPEC §8), with exactly the shapes older front-ends use.

``POST /api/models/pull`` and ``GET /api/models/pull/{pull_id}`` (Ollama pulls; a pull id is a
download id), ``WS /ws/models/pull/{pull_id}`` (one pull's progress until it ends),
``POST /api/models/download`` and ``GET /api/models/download/status`` (URL downloads). Errors
carry ``success: false`` (the router declares it). Included before the models router, whose
``/api/models/{provider}/{name:path}`` routes would otherwise catch these paths.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Literal

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field

from modelyard.api.deps import ServicesDep
from modelyard.api.designed import MODEL_SOURCE
from modelyard.api.policy import policy
from modelyard.downloads.specs import DownloadRequest
from modelyard.downloads.states import ACTIVE, FINISHED, DownloadState
from modelyard.downloads.views import DownloadView, UtcDatetime
from modelyard.errors import InvalidInput, NotFound
from modelyard.events import DOWNLOAD_PROGRESS, DOWNLOAD_REMOVED, DOWNLOAD_STATE, Subscription
from modelyard.instance_config import ModelMode
from modelyard.providers.registry import registry
from modelyard.services import Services

# Local apps (seed 004's page on another port) call these from a browser (SPEC §12).
router = APIRouter(
    tags=["compatibility"], dependencies=[policy(local_origins=True, success_field=True)]
)
NOT_FOUND_CLOSE = 4404  # a WebSocket close code in the application range, like HTTP 404
OVERFLOW_CLOSE = 1013
WEBSOCKET_DOC = """
`WS /ws/models/pull/{pull_id}` (compatibility): a `PullStatus` message at once, then one on every
change of the pull, until it ends: the socket then closes with 1000. An unknown pull gets
`{"error", "code": "download_not_found"}` and a close with 4404; a deleted one a close with 4404.
"""

# The compatibility shapes know three states; queued, paused and verifying are on the way.
PullState = Literal["PULLING", "COMPLETED", "FAILED"]
DownloadStatusState = Literal["downloading", "completed", "failed"]
_S = DownloadState
_PULL_STATE: Mapping[DownloadState, PullState] = {
    **dict.fromkeys(ACTIVE, "PULLING"),
    _S.COMPLETED: "COMPLETED",
    _S.FAILED: "FAILED",
    _S.CANCELLED: "FAILED",
}
_DOWNLOAD_STATE: Mapping[DownloadState, DownloadStatusState] = {
    **dict.fromkeys(ACTIVE, "downloading"),
    _S.COMPLETED: "completed",
    _S.FAILED: "failed",
    _S.CANCELLED: "failed",
}


class PullBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(max_length=512)
    provider: str | None = Field(
        default=None, max_length=32, description="a provider that pulls; default: the first"
    )
    instance_id: str | None = Field(default=None, max_length=64)


class DownloadBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    filename: str | None = Field(default=None, max_length=1024)
    mode: str | None = Field(default=None, max_length=16)


class PullStarted(BaseModel):
    pull_id: str
    status: PullState


class PullStatus(BaseModel):
    """One pull (or any download: a pull id is a download id), as seed clients read it."""

    pull_id: str
    model_name: str | None
    status: PullState
    progress: float = Field(ge=0, le=100)
    current_layer: int
    total_layers: int
    downloaded_bytes: int
    total_bytes: int | None
    total_final: bool = Field(
        description="false while total_bytes and total_layers may still grow: Ollama leaves "
        "out layers that finish between two progress ticks, so the totals are the layers seen "
        "so far until the pull ends and Ollama's record of the model settles them"
    )
    current_status: str = Field(description="Ollama's last status line, else the state")
    started_at: UtcDatetime
    error: str | None

    @classmethod
    def of(cls, task: DownloadView) -> PullStatus:
        return cls(
            pull_id=task.id,
            model_name=task.model_name or task.filename or task.url,
            status=_PULL_STATE[task.state],
            progress=task.progress,
            current_layer=task.current_layer,
            total_layers=task.total_layers,
            downloaded_bytes=task.downloaded,
            total_bytes=task.total,
            total_final=task.total_final,
            current_status=task.current_status or task.state.value,
            started_at=task.started_at or task.created_at,
            error=task.error,
        )


class DownloadStarted(BaseModel):
    success: bool
    url: str | None
    mode: ModelMode
    message: str = Field(description="'download started', or 'already <state>'")
    download_id: str


class DownloadStatusItem(BaseModel):
    """One URL's download in ``GET /api/models/download/status``."""

    url: str | None
    filename: str | None
    status: DownloadStatusState
    downloaded: int
    total: int | None
    progress: float = Field(ge=0, le=100)
    error: str | None
    verified: bool = Field(
        description="false for a file that was already there with the server's size and no "
        "checksum: completed without being fetched or checked"
    )

    @classmethod
    def of(cls, task: DownloadView) -> DownloadStatusItem:
        return cls(
            url=task.url,
            filename=task.filename,
            status=_DOWNLOAD_STATE[task.state],
            downloaded=task.downloaded,
            total=task.total,
            progress=task.progress,
            error=task.error,
            verified=task.verified,
        )


class DownloadStatus(BaseModel):
    """``?url=``: that URL's newest download."""

    success: bool
    download: DownloadStatusItem


class DownloadStatuses(BaseModel):
    """Without ``url``: every URL's newest download, by URL."""

    success: bool
    downloads: dict[str, DownloadStatusItem]


@router.post("/api/models/pull", responses=MODEL_SOURCE)
async def start_pull(body: PullBody, services: ServicesDep) -> PullStarted:
    """Pull a model through a runtime that pulls (Ollama): ``{"pull_id", "status": "PULLING"}``."""
    pullers = [p.kind for p in registry if p.capabilities.pulls]
    puller = registry.find(body.provider.strip().lower() if body.provider else pullers[0])
    if puller is None or not puller.capabilities.pulls:
        raise InvalidInput(
            f"models can be pulled from {', '.join(pullers)} only, not {body.provider!r}",
            code="unsupported_provider",
            hint=f"Use provider {pullers[0]!r}, or POST /api/downloads for URL and Hugging "
            "Face files.",
        )
    request = DownloadRequest(
        source=puller.kind, model_name=body.model_name, instance_id=body.instance_id
    )
    task, _ = await services.downloads.submit(request)
    return PullStarted(pull_id=task.id, status=_PULL_STATE[task.state])


@router.get("/api/models/pull/{pull_id}")
async def pull_status(pull_id: str, services: ServicesDep) -> PullStatus:
    """One pull: status PULLING, COMPLETED or FAILED, bytes, layers and Ollama's status."""
    return PullStatus.of(services.downloads.get(pull_id))


@router.post("/api/models/download", responses=MODEL_SOURCE)
async def start_download(body: DownloadBody, services: ServicesDep) -> DownloadStarted:
    """Download a file from a URL into the models directory."""
    request = DownloadRequest(source="url", url=body.url, filename=body.filename, mode=body.mode)
    task, created = await services.downloads.submit_compatible(request)
    if not task.verified and created:
        message = "completed: the file was already there with the server's size (not verified)"
    elif created:
        message = "download started"
    else:
        message = f"already {task.state.value}"
    return DownloadStarted(
        success=True,
        url=task.url,
        mode=task.mode,
        message=message,
        download_id=task.id,
    )


@router.get("/api/models/download/status")
async def download_status(
    services: ServicesDep, url: str | None = Query(default=None, max_length=8192)
) -> DownloadStatus | DownloadStatuses:
    """One URL's newest download (``?url=``), or every URL's."""
    found = services.downloads.by_url()
    if url is None:
        items = {u: DownloadStatusItem.of(t) for u, t in found.items()}
        return DownloadStatuses(success=True, downloads=items)
    task = found.get(url.strip())
    if task is None:
        raise NotFound(
            f"no download of {url!r}",
            code="download_not_found",
            hint="POST /api/models/download starts one.",
        )
    return DownloadStatus(success=True, download=DownloadStatusItem.of(task))


@router.websocket("/ws/models/pull/{pull_id}")
async def pull_socket(ws: WebSocket, pull_id: str) -> None:
    """The pull's status now, then on every change, until it completes or fails."""
    services: Services = ws.app.state.services
    await ws.accept()
    # Subscribe before reading the current state, so no change falls in between.
    sub = services.bus.subscribe(
        [DOWNLOAD_STATE.name, DOWNLOAD_PROGRESS.name, DOWNLOAD_REMOVED.name]
    )
    try:
        task = services.downloads.find(pull_id)
        if task is None:
            await ws.send_json({"error": f"no pull {pull_id!r}", "code": "download_not_found"})
            await ws.close(code=NOT_FOUND_CLOSE)
            return
        await ws.send_json(PullStatus.of(task).model_dump(mode="json"))
        if task.state in FINISHED:
            await ws.close()  # 1000: the pull has ended, there is nothing more to send
            return
        await _follow(ws, sub, pull_id)
    except WebSocketDisconnect:
        pass
    finally:
        services.bus.unsubscribe(sub)


async def _follow(ws: WebSocket, sub: Subscription, pull_id: str) -> None:
    """Forward the pull's events; stop when it ends or the client leaves."""
    leaving = asyncio.create_task(_until_disconnect(ws))
    try:
        while True:
            getting = asyncio.create_task(sub.get())
            done, _ = await asyncio.wait({getting, leaving}, return_when=asyncio.FIRST_COMPLETED)
            if leaving in done:
                getting.cancel()
                return
            event = getting.result()
            if event is None:
                await ws.close(code=OVERFLOW_CLOSE, reason="client too slow; reconnect")
                return
            if event.data.get("id") != pull_id:
                continue
            if event.type == DOWNLOAD_REMOVED.name:
                await ws.close(code=NOT_FOUND_CLOSE, reason="the pull was deleted")
                return
            task: DownloadView = event.payload
            await ws.send_json(PullStatus.of(task).model_dump(mode="json"))
            if task.state in FINISHED:
                await ws.close()
                return
    finally:
        leaving.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
            await leaving


async def _until_disconnect(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends, text or binary, until it leaves."""
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass
