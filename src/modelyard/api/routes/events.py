"""``WS /ws/events``: a snapshot, then deltas; ``{"subscribe": [...]}`` filters (SPEC §7)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from modelyard.api.policy import policy
from modelyard.clock import iso, utcnow
from modelyard.events import EVENT_TYPES, Event, Subscription
from modelyard.services import Services

router = APIRouter(dependencies=[policy()])
OVERFLOW_CLOSE = 1013  # "try again later": the client reconnects and reads a fresh snapshot
WEBSOCKET_DOC = """
`WS /ws/events`: a `snapshot` message (`{"seq", "ts", "type": "snapshot", "data"}`), then one
envelope `{"seq", "ts", "type", "data"}` per event. Send `{"subscribe": ["download.*", ...]}`
to filter by type. The types (their data: docs/API.md, "Events"):
""" + "".join(f"- `{t.name}`: {t.description}\n" for t in EVENT_TYPES.values())


SUBSCRIBE_HINT = (
    'Send {"subscribe": ["download.*", ...]} as a text frame (or UTF-8 in a binary one).'
)
# Event types are few and short; these bounds leave room for every sensible filter.
MAX_PATTERNS = 64
MAX_PATTERN_LENGTH = 128


class Channel:
    """One client's socket. Everything after the snapshot is a ``{"seq", "ts", "type", "data"}``
    envelope; a control reply carries the ``seq`` of the last message sent before it, so the
    numbers a client reads never go back."""

    def __init__(self, ws: WebSocket, seq: int) -> None:
        self.ws = ws
        self.seq = seq

    async def send_event(self, event: Event[Any]) -> None:
        self.seq = max(self.seq, event.seq)
        await self.ws.send_json(event.envelope())

    async def reply(self, kind: str, data: dict[str, Any]) -> None:
        await self.ws.send_json({"seq": self.seq, "ts": iso(utcnow()), "type": kind, "data": data})

    async def error(self, code: str, detail: str) -> None:
        await self.reply("error", {"code": code, "detail": detail, "hint": SUBSCRIBE_HINT})


async def _read_commands(channel: Channel, sub: Subscription) -> None:
    """Answer the client's commands, text or binary frames alike, until it leaves."""
    while True:
        message = await channel.ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        try:
            raw = message.get("text")
            if raw is None:
                raw = (message.get("bytes") or b"").decode("utf-8")
            command: Any = json.loads(raw)
        except ValueError:  # bad JSON, or a binary frame that is not UTF-8
            await channel.error("invalid_json", "the message is not UTF-8 JSON")
            continue
        patterns = command.get("subscribe") if isinstance(command, dict) else None
        if isinstance(patterns, list) and all(isinstance(p, str) for p in patterns):
            if len(patterns) > MAX_PATTERNS or any(len(p) > MAX_PATTERN_LENGTH for p in patterns):
                await channel.error(
                    "subscription_too_large",
                    f"at most {MAX_PATTERNS} patterns of at most {MAX_PATTERN_LENGTH} characters",
                )
                continue
            sub.set_patterns(patterns or None)
            await channel.reply("subscribed", {"patterns": patterns})
        else:
            await channel.error(
                "invalid_command", "the only command is subscribe, with a list of type patterns"
            )


async def stream_events(channel: Channel, sub: Subscription) -> None:
    """Send the subscription's events until the client leaves or falls too far behind."""
    while True:
        event = await sub.get()
        if event is None:
            await channel.ws.close(
                code=OVERFLOW_CLOSE, reason="client too slow; reconnect for a snapshot"
            )
            return
        await channel.send_event(event)


@router.websocket("/ws/events")
async def events_socket(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    bus = services.bus
    await ws.accept()
    sub = bus.subscribe()
    reader: asyncio.Task[None] | None = None
    try:
        snapshot = await bus.snapshot()
        channel = Channel(ws, bus.last_seq)
        await channel.reply("snapshot", snapshot)
        reader = asyncio.create_task(_read_commands(channel, sub))
        sender = asyncio.create_task(stream_events(channel, sub))
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
