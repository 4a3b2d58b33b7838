"""The download manager (SPEC §5): one queue for Ollama pulls, URL and Hugging Face files.

The API and the lifecycle call this facade: create (validated by ``specs`` before anything is
written), read, pause, resume, cancel, retry and delete. Tasks live in the repository, which
saves them in the ``downloads`` table and announces every change (``download.state``, and
``download.progress`` at most every 250 ms per task); the scheduler runs them, at most
``download_concurrency`` at once. Tasks that were running when modelyard stopped (even by
SIGKILL) are queued again at start and resume from their part files.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelyard.config import Settings
from modelyard.downloads.repository import TaskRepository
from modelyard.downloads.scheduler import DownloadScheduler, discard
from modelyard.downloads.specs import (
    DownloadRequest,
    Plan,
    check_destination,
    content_length,
    plan_download,
)
from modelyard.downloads.states import ACTIVE, RUNNING, DownloadState
from modelyard.downloads.store import DownloadStore
from modelyard.downloads.tasks import Task, TaskLog
from modelyard.downloads.views import DownloadLog, DownloadView
from modelyard.errors import Conflict, InvalidInput
from modelyard.events import EventBus
from modelyard.instance_config import ModelMode
from modelyard.metrics import Metrics
from modelyard.runtimes.instances import InstanceRegistry
from modelyard.runtimes.log_files import LogLevel, read_matching
from modelyard.store.db import Database


class DownloadManager:
    """Create, read, pause, resume, cancel, retry and delete download tasks."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        bus: EventBus,
        metrics: Metrics,
        instances: InstanceRegistry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.instances = instances
        self.logs = TaskLog(settings.logs_dir / "downloads")
        self.repository = TaskRepository(DownloadStore(db), bus, metrics, self.logs)
        self.scheduler = DownloadScheduler(settings, self.repository, instances, clock)
        self._create_lock = asyncio.Lock()
        bus.add_snapshot_source("downloads", self.repository.snapshot)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every task; queue again the ones that were running when modelyard stopped."""
        for task in await self.repository.load():
            if task.state in RUNNING:
                self.repository.requeue_interrupted(task)
            if task.state is DownloadState.QUEUED:
                self.scheduler.enqueue(task)
        self.scheduler.start()

    async def close(self) -> None:
        """Stop the running tasks without changing their saved state, so they resume later."""
        await self.scheduler.close()
        self.repository.close()

    # -- reading ----------------------------------------------------------------------------

    def list_all(self, state: DownloadState | None = None) -> list[DownloadView]:
        """Every task, newest first (optionally only one state)."""
        return self.repository.views(state)

    def get(self, task_id: str) -> DownloadView:
        return self.repository.get(task_id).view()

    def find(self, task_id: str) -> DownloadView | None:
        task = self.repository.tasks.get(task_id)
        return task.view() if task is not None else None

    def by_url(self) -> dict[str, DownloadView]:
        """The newest URL task of every URL (the compatibility status listing)."""
        return self.repository.by_url()

    def log_tail(
        self, task_id: str, lines: int, level: LogLevel | None = None, text: str = ""
    ) -> DownloadLog:
        """The last ``lines`` lines of a task's log at ``level`` or above that contain
        ``text`` (filtered as an instance's log is)."""
        path = self.log_file(task_id)
        try:
            tail = read_matching(path, lines, level, text)
        except FileNotFoundError:
            tail = []
        return DownloadLog(path=str(path), lines=tail)

    def log_file(self, task_id: str) -> Path:
        """Where a task's log is (404 ``download_not_found`` for an unknown task)."""
        self.repository.get(task_id)
        return self.logs.path(task_id)

    # -- creating ---------------------------------------------------------------------------

    async def create(self, request: Mapping[str, Any]) -> DownloadView:
        """``POST /api/downloads`` as a call, from a recorded request (recreate, install)."""
        try:
            body = DownloadRequest.model_validate(request)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise InvalidInput(
                f"invalid download request {where}: {first['msg']}", code="invalid_request"
            ) from exc
        task, _ = await self.submit(body)
        return task

    async def submit(self, request: DownloadRequest) -> tuple[DownloadView, bool]:
        """Validate, then create a task, or return the existing one for the same source.

        Returns (task, created). Nothing is written anywhere unless the request is valid.
        """
        plan = await asyncio.to_thread(plan_download, request, self.settings, self.instances)
        async with self._create_lock:
            existing = self._duplicate(plan)
            if existing is None:
                check_destination(plan)
                self._check_destination(plan)
                task = _task_from(plan)
                await self.repository.add(task)
        if existing is not None:
            if existing.state is DownloadState.PAUSED:
                await self.resume(existing.id)
            return existing.view(), False
        self.logs.write(task.id, f"created: {task.source.value} {task.label}")
        self.repository.publish_state(task)
        self.scheduler.enqueue(task)
        return task.view(), True

    async def submit_compatible(self, request: DownloadRequest) -> tuple[DownloadView, bool]:
        """Seed 004's endpoint: as ``submit``, except for a file already in place with no
        checksum given. It is taken as the download when its size is the server's
        ``Content-Length`` (a HEAD request): completed at once, recorded as not verified. Any
        other such file is 409 ``destination_exists``. ``/api/downloads`` never does this."""
        plan = await asyncio.to_thread(plan_download, request, self.settings, self.instances)
        dest = plan.path
        if (
            dest is None
            or plan.url is None
            or plan.sha256 is not None
            or not dest.is_file()
            or self._duplicate(plan) is not None
        ):
            return await self.submit(request)
        size = dest.stat().st_size
        length = await content_length(plan.url, self.settings)
        if length != size:
            said = "gives no size" if length is None else f"has {length} bytes"
            raise Conflict(
                f"{dest.name} already exists in the models directory with {size} bytes, and "
                f"the server {said}",
                code="destination_exists",
                hint="Delete or rename the existing file, choose another filename, or give its "
                "sha256 (POST /api/downloads) to reuse it.",
            )
        async with self._create_lock:
            self._check_destination(plan)
            task = _task_from(plan)
            task.extra["found_in_place"] = True
            await self.repository.add(task)
        self.logs.write(
            task.id, f"created: {task.label} is already there with the server's {size} bytes"
        )
        self.repository.publish_state(task)
        await self.scheduler.take_in_place(task, size)
        return task.view(), True

    def _duplicate(self, plan: Plan) -> Task | None:
        """An unfinished task for the same source, or a completed one whose file is there."""
        for task in self.repository.newest_first():
            if task.dedupe_key != plan.dedupe_key:
                continue
            if task.state in ACTIVE:
                return task
            if task.state is DownloadState.COMPLETED and task.path and Path(task.path).is_file():
                return task
        return None

    def _check_destination(self, plan: Plan) -> None:
        for task in self.repository.tasks.values():
            if plan.path is not None and task.state in ACTIVE and task.path == str(plan.path):
                raise Conflict(
                    f"download {task.id} is already writing {plan.path.name}",
                    code="destination_busy",
                    hint="Wait for it, cancel it, or choose another filename.",
                )

    # -- commands ---------------------------------------------------------------------------

    async def pause(self, task_id: str) -> DownloadView:
        task = self.repository.get(task_id)
        if task.state is DownloadState.QUEUED:
            self.scheduler.dequeue(task)
            self.repository.set_state(task, DownloadState.PAUSED)
        elif task.state in RUNNING:
            await self.scheduler.stop(task, "pause")
        else:
            raise _not_now(task, "paused")
        return task.view()

    async def resume(self, task_id: str) -> DownloadView:
        task = self.repository.get(task_id)
        if task.state is not DownloadState.PAUSED:
            raise _not_now(task, "resumed")
        self.repository.set_state(task, DownloadState.QUEUED)
        self.scheduler.enqueue(task)
        return task.view()

    async def cancel(self, task_id: str) -> DownloadView:
        task = self.repository.get(task_id)
        if task.state in RUNNING:
            await self.scheduler.stop(task, "cancel")
        elif task.state in {DownloadState.QUEUED, DownloadState.PAUSED}:
            self.scheduler.dequeue(task)
            await self.scheduler.cancelled(task)
        else:
            raise _not_now(task, "cancelled")
        return task.view()

    async def retry(self, task_id: str) -> DownloadView:
        task = self.repository.get(task_id)
        if task.state not in {DownloadState.FAILED, DownloadState.CANCELLED}:
            raise _not_now(task, "retried")
        self.logs.write(task.id, "retry requested")
        self.repository.set_state(task, DownloadState.QUEUED)
        self.scheduler.enqueue(task)
        return task.view()

    async def delete(self, task_id: str) -> None:
        """Forget a task (stopping it first); a completed model's file is never touched."""
        task = self.repository.get(task_id)
        if task.runner is not None:
            await self.scheduler.stop(task, "delete")
        self.scheduler.dequeue(task)
        if task.state is not DownloadState.COMPLETED and task.path:
            await asyncio.to_thread(discard, Path(task.path))
        await self.repository.remove(task)


def _task_from(plan: Plan) -> Task:
    return Task(
        id=secrets.token_hex(8),
        source=plan.source,
        dedupe_key=plan.dedupe_key,
        model_name=plan.model_name,
        url=plan.url,
        repo=plan.repo,
        revision=plan.revision,
        filename=plan.filename,
        path=str(plan.path) if plan.path is not None else None,
        instance_id=plan.instance_id,
        sha256=plan.sha256,
        mode=ModelMode(plan.mode),
        total=plan.total,
        force=plan.force,
        extra=plan.extra.copy(),
    )


def _not_now(task: Task, verb: str) -> Conflict:
    return Conflict(
        f"download {task.id} is {task.state.value} and cannot be {verb}",
        code="invalid_download_state",
        hint="Pause queued or running downloads, resume paused ones, retry failed ones.",
    )
