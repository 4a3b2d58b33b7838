"""``WS /ws/events``: a snapshot, then deltas; ``{"subscribe": [...]}`` filters (SPEC §7)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from modelyard.events import EventBus, Subscription, now_rfc3339
from modelyard.services import Services

router = APIRouter()
OVERFLOW_CLOSE = 1013  # "try again later": the client reconnects and reads a fresh snapshot


async def _read_commands(ws: WebSocket, sub: Subscription) -> None:
    while True:
        raw = await ws.receive_text()
        try:
            message: Any = json.loads(raw)
        except ValueError:
            await ws.send_json({"type": "error", "data": {"code": "invalid_json"}})
            continue
        patterns = message.get("subscribe") if isinstance(message, dict) else None
        if isinstance(patterns, list) and all(isinstance(p, str) for p in patterns):
            sub.set_patterns(patterns or None)
            await ws.send_json({"type": "subscribed", "data": {"patterns": patterns}})
        else:
            await ws.send_json(
                {
                    "type": "error",
                    "data": {
                        "code": "invalid_command",
                        "hint": 'Send {"subscribe": ["download.*", ...]}.',
                    },
                }
            )


async def stream_events(ws: WebSocket, bus: EventBus, sub: Subscription) -> None:
    """Send the subscription's events until the client leaves or falls too far behind."""
    while True:
        event = await sub.get()
        if event is None:
            await ws.close(code=OVERFLOW_CLOSE, reason="client too slow; reconnect for a snapshot")
            return
        await ws.send_json(event.envelope())


@router.websocket("/ws/events")
async def events_socket(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    bus = services.bus
    await ws.accept()
    sub = bus.subscribe()
    reader: asyncio.Task[None] | None = None
    try:
        snapshot = await bus.snapshot()
        await ws.send_json(
            {"seq": bus.last_seq, "ts": now_rfc3339(), "type": "snapshot", "data": snapshot}
        )
        reader = asyncio.create_task(_read_commands(ws, sub))
        sender = asyncio.create_task(stream_events(ws, bus, sub))
        done, _ = await asyncio.wait({reader, sender}, return_when=asyncio.FIRST_COMPLETED)
        for task in {reader, sender} - done:
            task.cancel()
        for task in done:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                task.result()
    except WebSocketDisconnect:
        pass
    finally:
        bus.unsubscribe(sub)
