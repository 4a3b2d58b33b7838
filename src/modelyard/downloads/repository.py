"""The download tasks: every change to a task is made here, checked, saved and announced.

A state change is checked against ``states.TRANSITIONS`` (an illegal one is a bug and raises)
and brings the fields that go with the new state: an error only in ``failed``, a finish time
only in a finished state, a speed and an ETA only while running. Changes may come from the
event loop or from a run's callbacks; each holds the task's lock, so the order of saves and
events for one task is the order of the changes. Store writes go through one writer thread,
in order, so the event loop never waits on SQLite (a WAL checkpoint fsyncs, which can take
long while downloads fill the disk).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from modelyard.clock import utcnow
from modelyard.downloads.execution import Completion, RunContext
from modelyard.downloads.specs import DownloadRequest
from modelyard.downloads.states import (
    ACTIVE,
    FINISHED,
    RUNNING,
    DownloadState,
    SourceKind,
    check_transition,
)
from modelyard.downloads.store import DownloadStore, SourceKey
from modelyard.downloads.tasks import DownloadColumns, Task, TaskLog
from modelyard.downloads.views import DownloadView
from modelyard.errors import NotFound
from modelyard.events import (
    DOWNLOAD_PROGRESS,
    DOWNLOAD_REMOVED,
    DOWNLOAD_STATE,
    DownloadRemoved,
    EventBus,
    wire_form,
)
from modelyard.metrics import Metrics
from modelyard.providers.registry import registry

log = logging.getLogger("modelyard.downloads")
T = TypeVar("T")


class TaskRepository:
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
        """Every saved task, oldest first, now in the repository."""
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
        self.bus.publish(DOWNLOAD_REMOVED, DownloadRemoved(id=task.id), key=_key(task))

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

    def views(self, state: DownloadState | None = None) -> list[DownloadView]:
        """Every task, newest first (optionally only one state)."""
        return [t.view() for t in self.newest_first() if state in (None, t.state)]

    def by_url(self) -> dict[str, DownloadView]:
        """The newest URL task of every URL (the compatibility status listing)."""
        found: dict[str, DownloadView] = {}
        for task in reversed(self.newest_first()):
            if task.source is SourceKind.URL and task.url:
                found[task.url] = task.view()
        return found

    def snapshot(self) -> list[dict[str, Any]]:
        """The ``downloads`` section of the WebSocket snapshot: tasks not yet finished."""
        return [wire_form(t.view()) for t in list(self.tasks.values()) if t.state in ACTIVE]

    # -- changing state -----------------------------------------------------------------------

    def set_state(self, task: Task, state: DownloadState) -> None:
        """Move the task to ``state`` (not ``failed``: see ``fail``), save and announce it."""
        self._change(task, state, None)

    def fail(self, task: Task, code: str, detail: str) -> None:
        self._change(task, DownloadState.FAILED, (code, detail))
        self.logs.write(task.id, f"failed: {code}: {detail}")
        self.metrics.pull_total.labels(model_name=task.label, status="failed").inc()

    def cancelled(self, task: Task) -> None:
        self._change(task, DownloadState.CANCELLED, None)
        self.logs.write(task.id, "cancelled: the partial file was removed")
        self.metrics.pull_total.labels(model_name=task.label, status="cancelled").inc()

    async def complete(
        self, task: Task, done: Completion, key: SourceKey, request: DownloadRequest
    ) -> None:
        """Save the task completed with the model's source, then show and announce it (in
        that order: whoever sees a completed task finds its row and its source)."""
        now = utcnow()
        with task.lock:
            check_transition(task.id, task.state, DownloadState.COMPLETED)
            finished = replace(task)
        _finish(finished, done, now)
        # The model's source: the runtime that pulled it, or the URL its bytes came from.
        source = task.source.value if registry.puller(task.source) else task.url or ""
        row = finished.row_values()
        await self.write(self.store.complete, task.id, row, key, source, request)
        self.logs.write(task.id, "state: completed")
        with task.lock:
            _finish(task, done, now)
            self.publish_state(task)
        self.count_active()
        self.metrics.pull_total.labels(model_name=task.label, status="success").inc()
        if task.started_at is not None:
            seconds = (now - task.started_at).total_seconds()
            self.metrics.pull_duration.labels(model_name=task.label).observe(seconds)

    def requeue_interrupted(self, task: Task) -> None:
        """At start: a task that was running when modelyard stopped waits for its turn again
        (it resumes from its part file). Saved, not announced: nobody listens yet."""
        with task.lock:
            check_transition(task.id, task.state, DownloadState.QUEUED)
            _enter(task, DownloadState.QUEUED, None, utcnow())
            self.submit(self.store.update, task.id, task.row_values())
        self.logs.write(task.id, "modelyard restarted: resuming from the part file")

    def _change(self, task: Task, state: DownloadState, error: tuple[str, str] | None) -> None:
        with task.lock:
            check_transition(task.id, task.state, state)
            _enter(task, state, error, utcnow())
            self.submit(self.store.update, task.id, task.row_values())
            self.publish_state(task)
        self.count_active()

    def publish_state(self, task: Task) -> None:
        self.bus.publish(DOWNLOAD_STATE, task.view(), key=_key(task))

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
                self.bus.publish(DOWNLOAD_PROGRESS, task.view(), key=_key(task))
            meter.mark_published()
            self.metrics.download_bytes.labels(task.source.value).inc(meter.take_new_bytes())
            if force or meter.store_due():
                meter.mark_stored()
                self.submit(self.store.update, task.id, _progress_values(task))

    def count_attempt(self, ctx: RunContext) -> None:
        """Another attempt of the run's task starts (the task counts those of every run)."""
        task = ctx.task
        with task.lock:
            if task.run != ctx.run:
                return
            task.attempts += 1
            values: DownloadColumns = {"attempts": task.attempts}
        self.submit(self.store.update, task.id, values)

    def save_validator(self, ctx: RunContext, validator: str | None, total: int | None) -> None:
        """Remember the server's validator (for If-Range after a restart) and the size."""
        task = ctx.task
        with task.lock:
            if task.run != ctx.run:
                return
            task.extra["validator"] = validator
            task.total = total if total is not None else task.total
            values: DownloadColumns = {"extra": task.extra.copy(), "total": task.total}
        self.submit(self.store.update, task.id, values)

    def verifying(self, ctx: RunContext) -> None:
        """The run has every byte and checks them."""
        task = ctx.task
        if ctx.run != task.run:
            return
        self.set_state(task, DownloadState.VERIFYING)
        self.logs.write(task.id, "state: verifying")

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


def _enter(task: Task, state: DownloadState, error: tuple[str, str] | None, now: datetime) -> None:
    """Set ``state`` and the fields that go with it (the caller holds the lock)."""
    task.state = state
    task.error_code, task.error = error if error is not None else (None, None)
    task.finished_at = now if state in FINISHED else None
    if state is DownloadState.DOWNLOADING and task.started_at is None:
        task.started_at = now
    if state is not DownloadState.VERIFYING:  # verifying keeps the last figures it had
        task.speed_bps = task.eta_s = None


def _finish(task: Task, done: Completion, now: datetime) -> None:
    task.downloaded = task.total = done.size
    if done.sha256 is not None:
        task.sha256 = done.sha256
    _enter(task, DownloadState.COMPLETED, None, now)


def _key(task: Task) -> str:
    return f"download:{task.id}"


def _progress_values(task: Task) -> DownloadColumns:
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
