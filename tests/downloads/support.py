"""Helpers for the download manager tests: payloads, waiting on tasks, recording events."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from modelyard.events import Event, EventBus
from tests.fakes.fileserver import FileServer
from tests.support.waiting import HANG_GUARD_S, wait_until

MiB = 1 << 20
FINISHED = {"completed", "failed", "cancelled"}


@dataclass
class Payload:
    name: str
    data: bytes
    url: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def random_bytes(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def add_payload(server: FileServer, name: str, size: int, seed: int = 1) -> Payload:
    data = random_bytes(size, seed)
    server.add_file(name, data)
    return Payload(name, data, server.url_for(name))


def task_of(http: httpx.Client, task_id: str) -> dict[str, Any]:
    resp = http.get(f"/api/downloads/{task_id}")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def wait_state(
    http: httpx.Client, task_id: str, states: set[str], timeout: float = HANG_GUARD_S
) -> dict[str, Any]:
    """Poll the task until its state is one of ``states``; the task as last seen."""
    seen: dict[str, Any] = {}

    def reached() -> bool:
        seen.update(task_of(http, task_id))
        return seen["state"] in states

    try:
        wait_until(reached, f"download {task_id} to be {sorted(states)}", timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {seen}") from None
    return seen


def wait_bytes(http: httpx.Client, task_id: str, count: int) -> dict[str, Any]:
    """Poll until the task reports at least ``count`` bytes downloaded."""
    seen: dict[str, Any] = {}

    def reached() -> bool:
        seen.update(task_of(http, task_id))
        assert seen["state"] not in FINISHED, seen
        return int(seen["downloaded"]) >= count

    wait_until(reached, f"{count} bytes of download {task_id}")
    return seen


def create(http: httpx.Client, status: int = 201, **body: Any) -> dict[str, Any]:
    resp = http.post("/api/downloads", json=body)
    assert resp.status_code == status, resp.text
    task: dict[str, Any] = resp.json()
    return task


@dataclass
class Recorder:
    """Every download event the bus publishes, with the monotonic time it was published."""

    events: list[tuple[float, Event]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, bus: EventBus) -> Recorder:
        bus.add_listener("download.*", self._on_event)
        return self

    def _on_event(self, event: Event) -> None:
        with self.lock:
            self.events.append((time.monotonic(), event))

    def of(self, task_id: str, kind: str) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [
                (t, e.data) for t, e in self.events if e.type == kind and e.data["id"] == task_id
            ]

    def states(self, task_id: str) -> list[str]:
        return [data["state"] for _, data in self.of(task_id, "download.state")]


def files_under(root: Path) -> list[str]:
    """Every file below ``root``, relative, sorted (the models directory's contents)."""
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
