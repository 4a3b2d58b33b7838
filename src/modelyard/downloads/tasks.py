"""A download task (SPEC §5): what is persisted of it, what only a running task has, its log.

The repository (``repository.TaskRepository``) owns every Task and is the only code that
changes its state. Progress numbers are written by a run's callbacks under ``Task.lock``, which
also serialises state changes, so a progress event can never be published after the state
change that ended its run.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypedDict, cast

from modelyard.clock import as_utc, iso, utcnow
from modelyard.downloads.states import DownloadState, SourceKind
from modelyard.downloads.views import DownloadView
from modelyard.instance_config import ModelMode
from modelyard.store.tables import DownloadRow

_VIEW_FIELDS = tuple(DownloadView.model_fields)
# The columns of DownloadRow a Task carries: its view's fields but the computed ones.
_COMPUTED = ("progress", "total_final", "verified")
_COLUMNS = (*(name for name in _VIEW_FIELDS if name not in _COMPUTED), "dedupe_key")


class DownloadColumns(TypedDict, total=False):
    """Values of a ``downloads`` row: all of them for an insert, some for an update."""

    id: str
    source: str
    dedupe_key: str
    model_name: str | None
    url: str | None
    repo: str | None
    revision: str | None
    filename: str | None
    path: str | None
    instance_id: str | None
    sha256: str | None
    mode: str
    state: str
    downloaded: int
    total: int | None
    speed_bps: float | None
    eta_s: float | None
    error: str | None
    error_code: str | None
    attempts: int
    current_layer: int
    total_layers: int
    current_status: str | None
    force: bool
    extra: SourceDetails
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class SourceDetails(TypedDict, total=False):
    """What a task learned of its source, kept in the ``extra`` JSON column."""

    resolved_url: str  # a Hub file: the URL its bytes come from, pinned to ``commit``
    commit: str | None
    expected_size: int | None  # the Hub's size of the file
    validator: str | None  # the server's ETag or Last-Modified, for If-Range after a restart
    total_settled: bool  # a pull's figures are the runtime's record of the model, not the sums
    found_in_place: bool  # a file taken as it was found, by its size alone: not verified


@dataclass(eq=False)
class Task:
    """One download, as persisted in DownloadRow, plus what only a running task has."""

    id: str
    source: SourceKind
    dedupe_key: str
    state: DownloadState = DownloadState.QUEUED
    model_name: str | None = None
    url: str | None = None
    repo: str | None = None
    revision: str | None = None
    filename: str | None = None
    path: str | None = None
    instance_id: str | None = None
    sha256: str | None = None
    mode: ModelMode = ModelMode.LLM
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
    extra: SourceDetails = field(default_factory=lambda: SourceDetails())
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
        if self.state is DownloadState.COMPLETED:
            return 100.0
        raw = min(99.9, round(100.0 * self.downloaded / self.total, 1)) if self.total else 0.0
        return max(raw, self.progress_floor)

    @property
    def total_final(self) -> bool:
        """Whether ``total`` is the whole: a file's size as its server or the Hub gave it, a
        pull's once the runtime's record of the model confirmed it (until then the layers it
        has not shown yet are missing from the sum)."""
        if self.total is None:
            return False
        return self.model_name is None or self.extra.get("total_settled", False)

    @property
    def verified(self) -> bool:
        """False for a file taken as it was found, vouched for by its size alone (seed 004's
        endpoint): its bytes were neither fetched nor checked against a checksum."""
        return not self.extra.get("found_in_place", False)

    @property
    def label(self) -> str:
        """What the task fetches, for people and for metric labels."""
        return self.model_name or self.filename or self.url or self.id

    def view(self) -> DownloadView:
        """The public view of the task as it is now (the caller holds ``lock`` if it runs)."""
        return DownloadView.model_validate({name: getattr(self, name) for name in _VIEW_FIELDS})

    def row_values(self) -> DownloadColumns:
        """Every persisted column, for an insert or a full update."""
        values = cast(DownloadColumns, {name: getattr(self, name) for name in _COLUMNS})
        values["source"], values["state"] = self.source.value, self.state.value
        values["mode"], values["extra"] = self.mode.value, self.extra.copy()
        return values

    @classmethod
    def from_row(cls, row: DownloadRow) -> Task:
        values = {name: getattr(row, name) for name in _COLUMNS}
        values.update(
            source=SourceKind(row.source),
            state=DownloadState(row.state),
            mode=ModelMode(row.mode),
            extra=cast(SourceDetails, dict(row.extra or {})),  # as saved by row_values
            created_at=as_utc(row.created_at),
            started_at=as_utc(row.started_at) if row.started_at else None,
            finished_at=as_utc(row.finished_at) if row.finished_at else None,
        )
        return cls(**values)


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
