"""Helpers of the chat tests: a genuine llama-server process and an SSE reader."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.llama import llama_server as support_llama_server


@contextmanager
def llama_server(model: Path, log: Path, *extra: str) -> Iterator[str]:
    """The genuine llama-server on a free port with one slot; yields its base URL."""
    with support_llama_server(model, "-np", "1", *extra, ctx_size=None, log=log) as url:
        yield url


def events_of(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON events of a ``text/event-stream`` body, one per ``data:`` line."""
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line[6:])


def send(http: httpx.Client, conversation_id: str, **body: Any) -> list[dict[str, Any]]:
    """Send a message and read its whole event stream."""
    with http.stream(
        "POST", f"/api/conversations/{conversation_id}/messages", json=body, timeout=120
    ) as resp:
        assert resp.status_code == 200, resp.read().decode()
        assert resp.headers["content-type"].startswith("text/event-stream")
        return list(events_of(resp.iter_lines()))


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "token")


def slot_busy(base_url: str) -> bool:
    """Whether llama-server's single slot is generating (``/slots``)."""
    slots = httpx.get(f"{base_url}/slots", timeout=5).json()
    return any(s["is_processing"] for s in slots)
