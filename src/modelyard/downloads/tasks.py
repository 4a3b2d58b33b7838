"""A download task (SPEC §5): its states, its fields, its log file and its wire shapes.

The manager owns every Task and is the only code that changes one. Progress numbers are
written by worker threads under ``Task.lock``, which also serialises state changes, so a
progress event can never be published after the state change that ended its run.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from modelyard.clock import iso, utcnow
from modelyard.store.tables import DownloadRow


class State(StrEnum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    COMPLETED = "completed"
    PAUSED = "paused"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Source(StrEnum):
    OLLAMA = "ollama"
    URL = "url"
    HF = "hf"


RUNNING = frozenset({State.DOWNLOADING, State.VERIFYING})
ACTIVE = frozenset({State.QUEUED, State.DOWNLOADING, State.VERIFYING, State.PAUSED})
FINISHED = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED})

# The columns of DownloadRow a Task carries, in the order of the native wire shape.
_FIELDS = (
    "id",
    "source",
    "model_name",
    "url",
    "repo",
    "revision",
    "filename",
    "path",
    "instance_id",
    "sha256",
    "mode",
    "state",
    "downloaded",
    "total",
    "speed_bps",
    "eta_s",
    "error",
    "error_code",
    "attempts",
    "current_layer",
    "total_layers",
    "current_status",
    "force",
)
_TIMES = ("created_at", "started_at", "finished_at")


@dataclass(eq=False)
class Task:
    """One download, as persisted in DownloadRow, plus what only a running task has."""

    id: str
    source: Source
    dedupe_key: str
    state: State = State.QUEUED
    model_name: str | None = None
    url: str | None = None
    repo: str | None = None
    revision: str | None = None
    filename: str | None = None
    path: str | None = None
    instance_id: str | None = None
    sha256: str | None = None
    mode: str = "llm"
    downloaded: int = 0
    total: int | None = None
    speed_bps: float | None = None
    eta_s: float | None = None
    error: str | None = None
    error_code: str | None = None
    attempts: int = 0
    current_layer: int = 0
    total_layers: int = 0
    current_status: str | None = None
    force: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Runtime only: never persisted.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    run: int = 0  # bumped by every start; reports from an older run are ignored
    stop: str | None = None  # pause | cancel | delete | shutdown: why the run is stopping
    runner: asyncio.Task[None] | None = field(default=None, repr=False)
    # An Ollama pull learns its total layer by layer; the percentage must not drop meanwhile.
    progress_floor: float = 0.0

    @property
    def progress(self) -> float:
        """0–100, one decimal; 100 only when completed."""
        if self.state is State.COMPLETED:
            return 100.0
        raw = min(99.9, round(100.0 * self.downloaded / self.total, 1)) if self.total else 0.0
        return max(raw, self.progress_floor)

    @property
    def label(self) -> str:
        """What the task fetches, for people and for metric labels."""
        return self.model_name or self.filename or self.url or self.id

    def public(self) -> dict[str, Any]:
        """The native wire shape (``GET /api/downloads/{id}``) and event payload."""
        body: dict[str, Any] = {name: getattr(self, name) for name in _FIELDS}
        body["progress"] = self.progress
        body["source"] = self.source.value
        body["state"] = self.state.value
        body.update({name: iso(getattr(self, name)) for name in _TIMES})
        return body

    def row_values(self) -> dict[str, Any]:
        """Every persisted column, for an insert or a full update."""
        values = {name: getattr(self, name) for name in _FIELDS}
        values.update({name: getattr(self, name) for name in _TIMES})
        values.update(
            source=self.source.value,
            state=self.state.value,
            dedupe_key=self.dedupe_key,
            extra=dict(self.extra),
        )
        return values

    @classmethod
    def from_row(cls, row: DownloadRow) -> Task:
        values = {name: getattr(row, name) for name in (*_FIELDS, *_TIMES)}
        values.update(
            source=Source(row.source),
            state=State(row.state),
            dedupe_key=row.dedupe_key,
            extra=dict(row.extra or {}),
        )
        return cls(**values)


def compat_pull(task: dict[str, Any]) -> dict[str, Any]:
    """``GET /api/models/pull/{pull_id}`` from a task's public shape (SPEC §8)."""
    return {
        "pull_id": task["id"],
        "model_name": task["model_name"] or task["filename"] or task["url"],
        "status": _PULL_STATUS[task["state"]],
        "progress": task["progress"],
        "current_layer": task["current_layer"],
        "total_layers": task["total_layers"],
        "downloaded_bytes": task["downloaded"],
        "total_bytes": task["total"],
        "current_status": task["current_status"] or task["state"],
        "started_at": task["started_at"] or task["created_at"],
        "error": task["error"],
    }


def compat_download(task: dict[str, Any]) -> dict[str, Any]:
    """One item of ``GET /api/models/download/status`` (SPEC §8)."""
    return {
        "url": task["url"],
        "filename": task["filename"],
        "status": _DOWNLOAD_STATUS[task["state"]],
        "downloaded": task["downloaded"],
        "total": task["total"],
        "progress": task["progress"],
        "error": task["error"],
    }


# The compatibility shapes know three states; queued, paused and verifying are on the way.
_PULL_STATUS = {s.value: "PULLING" for s in ACTIVE} | {
    State.COMPLETED.value: "COMPLETED",
    State.FAILED.value: "FAILED",
    State.CANCELLED.value: "FAILED",
}
_DOWNLOAD_STATUS = {s.value: "downloading" for s in ACTIVE} | {
    State.COMPLETED.value: "completed",
    State.FAILED.value: "failed",
    State.CANCELLED.value: "failed",
}


class TaskLog:
    """The per-task log file under ``<data_dir>/logs/downloads/<id>.log``.

    Written from worker threads and the event loop; each line is one short append.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()

    def path(self, task_id: str) -> Path:
        return self.directory / f"{task_id}.log"

    def write(self, task_id: str, line: str) -> None:
        """Append one timestamped line."""
        text = f"{iso(utcnow())} {line}\n"
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with self.path(task_id).open("a", encoding="utf-8") as fh:
                fh.write(text)

    def tail(self, task_id: str, lines: int) -> list[str]:
        """The last ``lines`` lines (an empty list before the first one)."""
        try:
            text = self.path(task_id).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return text.splitlines()[-lines:]

    def remove(self, task_id: str) -> None:
        self.path(task_id).unlink(missing_ok=True)
