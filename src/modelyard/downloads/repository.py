"""The book of download tasks: every change to a task is made here, saved and announced.

Changes may come from the event loop or from a run's callbacks; each holds the task's lock,
so the order of saves and events for one task is the order of the changes. Store writes go
through one writer thread, in order, so the event loop never waits on SQLite (a WAL
checkpoint fsyncs, which can take long while downloads fill the disk).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from modelyard.downloads.execution import RunContext
from modelyard.downloads.store import DownloadStore, SourceKey
from modelyard.downloads.tasks import ACTIVE, RUNNING, Source, State, Task, TaskLog
from modelyard.errors import NotFound
from modelyard.events import EventBus
from modelyard.metrics import Metrics

log = logging.getLogger("modelyard.downloads")
T = TypeVar("T")


class TaskBook:
    """The tasks in memory, mirrored to the store and announced on the bus."""

    def __init__(
        self, store: DownloadStore, bus: EventBus, metrics: Metrics, logs: TaskLog
    ) -> None:
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.logs = logs
        self.tasks: dict[str, Task] = {}
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="download-store")

    async def load(self) -> list[Task]:
        """Every saved task, oldest first, now in the book."""
        loaded = await self.write(self.store.load)
        self.tasks.update((task.id, task) for task in loaded)
        return loaded

    async def add(self, task: Task) -> None:
        await self.write(self.store.insert, task.row_values())
        self.tasks[task.id] = task

    async def remove(self, task: Task) -> None:
        self.tasks.pop(task.id, None)
        await self.write(self.store.delete, task.id)
        self.logs.remove(task.id)
        self.bus.publish("download.removed", {"id": task.id}, key=f"download:{task.id}")

    def close(self) -> None:
        """Finish the queued store writes."""
        self._writer.shutdown(wait=True)

    # -- reading ----------------------------------------------------------------------------

    def get(self, task_id: str) -> Task:
        task = self.tasks.get(task_id)
        if task is None:
            raise NotFound(
                f"there is no download {task_id!r}",
                code="download_not_found",
                hint="GET /api/downloads lists the downloads.",
            )
        return task

    def newest_first(self) -> list[Task]:
        return sorted(self.tasks.values(), key=lambda t: t.created_at, reverse=True)

    def list_all(self, state: str | None = None) -> list[dict[str, Any]]:
        """Every task, newest first (optionally only one state)."""
        return [t.public() for t in self.newest_first() if state in (None, t.state.value)]

    def by_url(self) -> dict[str, dict[str, Any]]:
        """The newest URL task of every URL (the compatibility status listing)."""
        found: dict[str, dict[str, Any]] = {}
        for task in reversed(self.newest_first()):
            if task.source is Source.URL and task.url:
                found[task.url] = task.public()
        return found

    def snapshot(self) -> list[dict[str, Any]]:
        """The ``downloads`` section of the WebSocket snapshot: tasks not yet finished."""
        return [t.public() for t in list(self.tasks.values()) if t.state in ACTIVE]

    # -- changing ---------------------------------------------------------------------------

    def set_state(self, task: Task, state: State, **fields: Any) -> None:
        """Change the state (and fields), save the whole task and publish it; any thread."""
        with task.lock:
            task.state = state
            for name, value in fields.items():
                setattr(task, name, value)
            self.submit(self.store.update, task.id, task.row_values())
            self.publish_state(task)
        self.count_active()

    async def complete(
        self, task: Task, fields: dict[str, Any], key: SourceKey, request: dict[str, Any]
    ) -> None:
        """Save the task completed with the model's source, then announce it (in that order:
        whoever hears of a completed task finds its row and its source)."""
        values = {**task.row_values(), **fields, "state": State.COMPLETED.value}
        source = "ollama" if task.source is Source.OLLAMA else task.url or ""
        await self.write(self.store.complete, task.id, values, key, source, request)
        self.logs.write(task.id, "state: completed")
        self.set_state(task, State.COMPLETED, **fields)

    def publish_state(self, task: Task) -> None:
        self.bus.publish("download.state", task.public(), key=f"download:{task.id}")

    def count_active(self) -> None:
        active = sum(t.state in RUNNING for t in list(self.tasks.values()))
        self.metrics.active_downloads.set(active)

    # -- the Sink of a run's RunContext (any thread) -----------------------------------------

    def report(self, ctx: RunContext, *, force: bool = False, publish: bool = True) -> None:
        """Copy a run's progress into its task; publish it, and save it when due."""
        task, meter = ctx.task, ctx.meter
        with task.lock:
            if task.run != ctx.run or task.state not in RUNNING:
                return
            if not force and not meter.event_due():
                return
            speed = meter.speed()
            task.downloaded, task.speed_bps, task.eta_s = meter.downloaded, speed, meter.eta(speed)
            task.total = meter.total if meter.total is not None else task.total
            if publish:
                self.bus.publish(
                    "download.progress", task.public(), key=f"download:{task.id}", coalesce=True
                )
            meter.mark_published()
            self.metrics.download_bytes.labels(task.source.value).inc(meter.take_new_bytes())
            if force or meter.store_due():
                meter.mark_stored()
                self.submit(self.store.update, task.id, _progress_values(task))

    def save(self, ctx: RunContext, **fields: object) -> None:
        """Change and save some fields of the run's task (attempts, validator, total)."""
        task = ctx.task
        with task.lock:
            if task.run != ctx.run:
                return
            for name, value in fields.items():
                if value is not None or name != "total":
                    setattr(task, name, value)
            values = {name: getattr(task, name) for name in fields}
        self.submit(self.store.update, task.id, values)

    def transition(self, task: Task, state: State, *, run: int | None = None) -> None:
        if run is not None and run != task.run:
            return
        self.logs.write(task.id, f"state: {state.value}")
        self.set_state(task, state)

    def write_log(self, task_id: str, line: str) -> None:
        self.logs.write(task_id, line)

    # -- the store ----------------------------------------------------------------------------

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        """Queue a store write; writes happen one at a time, in the order queued."""
        try:
            self._writer.submit(_logged, fn, *args)
        except RuntimeError:  # a report arriving after close(): the saved state stands
            log.debug("download store closed; dropped a write")

    async def write(self, fn: Callable[..., T], *args: object) -> T:
        """Run a store call on the writer thread and wait for it."""
        return await asyncio.wrap_future(self._writer.submit(fn, *args))


def _progress_values(task: Task) -> dict[str, Any]:
    return {
        "downloaded": task.downloaded,
        "total": task.total,
        "speed_bps": task.speed_bps,
        "eta_s": task.eta_s,
        "current_layer": task.current_layer,
        "total_layers": task.total_layers,
        "current_status": task.current_status,
    }


def _logged(fn: Callable[..., object], *args: object) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("saving a download failed")
