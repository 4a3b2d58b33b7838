"""A managed instance's log: filtered, downloaded whole, followed live. The file download and
the follower serve a download's log too (routes/downloads.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from modelyard.api.deps import ServicesDep
from modelyard.api.policy import policy
from modelyard.errors import ModelyardError, NotFound
from modelyard.runtimes.instance_service import InstanceLog
from modelyard.runtimes.log_files import LogLevel, follow, log_size
from modelyard.services import Services

router = APIRouter(tags=["providers"], dependencies=[policy()])
LOG = "/api/providers/{provider}/instances/{instance_id}/logs"
NOT_FOUND_CLOSE = 4404
FOLLOW_TAIL = 200
CHUNK = 64 * 1024  # a whole log is sent in reads of this size
WEBSOCKET_DOC = """
`WS /ws/providers/{provider}/instances/{instance_id}/logs`: `{"lines": [...]}` with the log's
last 200 lines at once, then one such message whenever lines are added (a rotation is followed).
An instance that is unknown or not managed gets `{"error", "code"}` and a close with 4404.
`WS /ws/downloads/{download_id}/log` follows a download's log the same way.
"""


@router.get(LOG)
async def instance_logs(
    provider: str,
    instance_id: str,
    services: ServicesDep,
    lines: int = Query(default=200, ge=1, le=5000),
    level: LogLevel | None = Query(default=None, description="this level and the ones above"),
    q: str = Query(default="", max_length=256, description="a text the lines contain"),
) -> InstanceLog:
    return await asyncio.to_thread(
        services.instance_service.log, provider, instance_id, lines, level, q
    )


@router.get(LOG + "/file", response_class=StreamingResponse)
async def instance_log_file(
    provider: str, instance_id: str, services: ServicesDep
) -> StreamingResponse:
    """The whole current log (rotated copies stay on disk beside it) as a download."""
    return whole_file(
        services.instance_service.log_file(provider, instance_id), f"{provider}/{instance_id}"
    )


def whole_file(path: Path, what: str) -> StreamingResponse:
    """The log as it is when asked for, streamed without a length: it may grow or be
    truncated by rotation while it is sent (a fixed Content-Length then breaks the answer)."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise NotFound(
            f"{what} has no log yet",
            code="no_log",
            hint="It is written from the first start (or the first line of a download) on.",
        ) from None
    size = os.fstat(handle.fileno()).st_size

    def chunks() -> Iterator[bytes]:
        with handle:
            left = size  # lines written after the request are the follower's, not this copy's
            while left > 0 and (chunk := handle.read(min(CHUNK, left))):
                left -= len(chunk)
                yield chunk

    return StreamingResponse(
        chunks(),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{path.name}"'},
    )


@router.websocket("/ws/providers/{provider}/instances/{instance_id}/logs")
async def follow_log(ws: WebSocket, provider: str, instance_id: str) -> None:
    services: Services = ws.app.state.services
    await follow_socket(
        ws,
        lambda: services.instance_service.log_file(provider, instance_id),
        lambda: services.instance_service.log(provider, instance_id, FOLLOW_TAIL).lines,
    )


async def follow_socket(
    ws: WebSocket, where: Callable[[], Path], tail_now: Callable[[], list[str]]
) -> None:
    """The tail at once, then each batch of lines added, until the client leaves."""
    await ws.accept()
    try:
        path = where()
    except ModelyardError as exc:
        await ws.send_json({"error": exc.detail, "code": exc.error_code})
        await ws.close(code=NOT_FOUND_CLOSE)
        return
    # Following starts from the size before the tail is read, so no line falls in between
    # (one written meanwhile may come twice).
    lines = follow(path, log_size(path))
    leaving: asyncio.Future[Any] = asyncio.create_task(_until_disconnect(ws))
    getting: asyncio.Future[Any] = asyncio.ensure_future(anext(lines))
    try:
        await ws.send_json({"lines": tail_now()})
        while True:
            done, _ = await asyncio.wait({getting, leaving}, return_when=asyncio.FIRST_COMPLETED)
            if leaving in done:
                return
            await ws.send_json({"lines": getting.result()})
            getting = asyncio.ensure_future(anext(lines))
    except WebSocketDisconnect:
        pass
    finally:
        for task in (getting, leaving):
            task.cancel()
        for task in (getting, leaving):  # the generator must stop before it is closed
            with contextlib.suppress(
                asyncio.CancelledError, WebSocketDisconnect, StopAsyncIteration
            ):
                await task
        await lines.aclose()


async def _until_disconnect(ws: WebSocket) -> None:
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass
