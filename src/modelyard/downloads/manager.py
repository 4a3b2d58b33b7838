"""The download manager (SPEC §5): one queue for Ollama pulls, URL and Hugging Face files.

Tasks live in memory and in the ``downloads`` table; this manager is their only writer. At
most ``download_concurrency`` run at once, the rest wait in a FIFO queue. A URL or Hugging
Face run is the URL engine in a worker process of its own (see ``worker``), an Ollama run a
pull stream in the event loop. Store writes go through one writer thread, in order, so the
event loop never waits on SQLite. States: queued → downloading → verifying → completed, or
paused, failed, cancelled; every change is a ``download.state`` event, progress a
``download.progress`` event at most every 250 ms per task. Tasks that were running when
modelyard stopped (even by SIGKILL) are queued again at start and resume from their part files.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelyard.clock import utcnow
from modelyard.config import Settings
from modelyard.downloads.execution import RunContext, run_fetch, run_pull
from modelyard.downloads.http_engine import DownloadError, FetchResult, discard_part
from modelyard.downloads.repository import TaskBook
from modelyard.downloads.specs import DownloadRequest, Plan, check_destination, plan_download
from modelyard.downloads.store import DownloadStore, SourceKey
from modelyard.downloads.tasks import ACTIVE, RUNNING, Source, State, Task, TaskLog
from modelyard.downloads.worker_pool import Workers
from modelyard.errors import Conflict, InvalidInput, ModelyardError
from modelyard.events import EventBus
from modelyard.gguf.local import local_key
from modelyard.metrics import Metrics
from modelyard.providers.registry import registry
from modelyard.runtimes.instances import InstanceRegistry
from modelyard.store.db import Database

log = logging.getLogger("modelyard.downloads")
TICK_S = 1.0  # refresh speed (it decays during a stall) and save progress this often
STOP_WAIT_S = 30.0
_REQUEST_FIELDS = ("source", "model_name", "url", "repo", "filename", "revision", "sha256")


class DownloadManager:
    """Create, run, pause, resume, cancel, retry and delete download tasks."""

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
        self.metrics = metrics
        self.instances = instances
        self.clock = clock
        self.logs = TaskLog(settings.logs_dir / "downloads")
        self.book = TaskBook(DownloadStore(db), bus, metrics, self.logs)
        self._queue: deque[str] = deque()
        self._runs: dict[str, RunContext] = {}
        self._create_lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None
        self._closing = False
        self._workers = Workers()
        bus.add_snapshot_source("downloads", self.book.snapshot)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every task; queue again the ones that were running when modelyard stopped."""
        for task in await self.book.load():
            if task.state in RUNNING:
                self.logs.write(task.id, "modelyard restarted: resuming from the part file")
                task.state = State.QUEUED
                self.book.submit(self.book.store.update, task.id, {"state": State.QUEUED.value})
            if task.state is State.QUEUED:
                self._queue.append(task.id)
        self._ticker = asyncio.create_task(self._tick())
        self._schedule()

    async def close(self) -> None:
        """Stop the running tasks without changing their saved state, so they resume later."""
        self._closing = True
        if self._ticker is not None:
            self._ticker.cancel()
        running = [t for t in self.book.tasks.values() if t.runner is not None]
        await asyncio.gather(*(self._stop(t, "shutdown") for t in running))
        await self._workers.close()
        self.book.close()

    # -- reading ----------------------------------------------------------------------------

    def list_all(self, state: str | None = None) -> list[dict[str, Any]]:
        """Every task, newest first (optionally only one state)."""
        return self.book.list_all(state)

    def get(self, task_id: str) -> dict[str, Any]:
        return self.book.get(task_id).public()

    def find(self, task_id: str) -> dict[str, Any] | None:
        task = self.book.tasks.get(task_id)
        return task.public() if task is not None else None

    def by_url(self) -> dict[str, dict[str, Any]]:
        """The newest URL task of every URL (the compatibility status listing)."""
        return self.book.by_url()

    def log_tail(self, task_id: str, lines: int) -> dict[str, Any]:
        self.book.get(task_id)
        return {"path": str(self.logs.path(task_id)), "lines": self.logs.tail(task_id, lines)}

    # -- creating ---------------------------------------------------------------------------

    async def create(self, request: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/downloads`` as a call (used by recreate and install)."""
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

    async def submit(self, request: DownloadRequest) -> tuple[dict[str, Any], bool]:
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
                await self.book.add(task)
        if existing is not None:
            if existing.state is State.PAUSED:
                await self.resume(existing.id)
            return existing.public(), False
        self.logs.write(task.id, f"created: {task.source.value} {task.label}")
        self.book.publish_state(task)
        self._enqueue(task)
        return task.public(), True

    def _duplicate(self, plan: Plan) -> Task | None:
        """An unfinished task for the same source, or a completed one whose file is there."""
        for task in self.book.newest_first():
            if task.dedupe_key != plan.dedupe_key:
                continue
            if task.state in ACTIVE:
                return task
            if task.state is State.COMPLETED and task.path and Path(task.path).is_file():
                return task
        return None

    def _check_destination(self, plan: Plan) -> None:
        for task in self.book.tasks.values():
            if plan.path is not None and task.state in ACTIVE and task.path == str(plan.path):
                raise Conflict(
                    f"download {task.id} is already writing {plan.path.name}",
                    code="destination_busy",
                    hint="Wait for it, cancel it, or choose another filename.",
                )

    # -- commands ---------------------------------------------------------------------------

    async def pause(self, task_id: str) -> dict[str, Any]:
        task = self.book.get(task_id)
        if task.state is State.QUEUED:
            self._dequeue(task)
            self.book.set_state(task, State.PAUSED)
        elif task.state in RUNNING:
            await self._stop(task, "pause")
        else:
            raise _not_now(task, "paused")
        return task.public()

    async def resume(self, task_id: str) -> dict[str, Any]:
        task = self.book.get(task_id)
        if task.state is not State.PAUSED:
            raise _not_now(task, "resumed")
        self.book.set_state(task, State.QUEUED)
        self._enqueue(task)
        return task.public()

    async def cancel(self, task_id: str) -> dict[str, Any]:
        task = self.book.get(task_id)
        if task.state in RUNNING:
            await self._stop(task, "cancel")
        elif task.state in {State.QUEUED, State.PAUSED}:
            self._dequeue(task)
            await self._cancelled(task)
        else:
            raise _not_now(task, "cancelled")
        return task.public()

    async def retry(self, task_id: str) -> dict[str, Any]:
        task = self.book.get(task_id)
        if task.state not in {State.FAILED, State.CANCELLED}:
            raise _not_now(task, "retried")
        self.logs.write(task.id, "retry requested")
        self.book.set_state(task, State.QUEUED, error=None, error_code=None, finished_at=None)
        self._enqueue(task)
        return task.public()

    async def delete(self, task_id: str) -> None:
        """Forget a task (stopping it first); a completed model's file is never touched."""
        task = self.book.get(task_id)
        if task.runner is not None:
            await self._stop(task, "delete")
        self._dequeue(task)
        if task.state is not State.COMPLETED and task.path:
            await asyncio.to_thread(_discard, Path(task.path))
        await self.book.remove(task)

    # -- running ----------------------------------------------------------------------------

    def _enqueue(self, task: Task) -> None:
        self._queue.append(task.id)
        self._schedule()

    def _dequeue(self, task: Task) -> None:
        if task.id in self._queue:
            self._queue.remove(task.id)

    def _schedule(self) -> None:
        while not self._closing and self._queue:
            if sum(t.runner is not None for t in self.book.tasks.values()) >= self._concurrency:
                return
            task = self.book.tasks.get(self._queue.popleft())
            if task is not None and task.state is State.QUEUED:
                self._launch(task)

    @property
    def _concurrency(self) -> int:
        return self.settings.download_concurrency

    def _launch(self, task: Task) -> None:
        with task.lock:
            task.run += 1
            task.stop = None
            task.speed_bps = task.eta_s = None
        ctx = RunContext(self.book, task, self.clock)
        self._runs[task.id] = ctx
        started = task.started_at or utcnow()
        self.book.set_state(
            task, State.DOWNLOADING, started_at=started, error=None, error_code=None
        )
        task.runner = asyncio.create_task(self._run(ctx), name=f"download-{task.id}")

    async def _run(self, ctx: RunContext) -> None:
        """Run one attempt series and move the task to where it ended."""
        task = ctx.task
        try:
            result = await self._attempts(ctx)
        except asyncio.CancelledError:
            if task.stop is None:
                raise
            await self._stopped(ctx)
        except DownloadError as exc:
            self._failed(ctx, exc.error_code, exc.detail)
        except ModelyardError as exc:
            self._failed(ctx, exc.error_code, exc.detail)
        except Exception as exc:  # a bug: the task must still end in a true state
            log.exception("download %s crashed", task.id)
            self._failed(ctx, "internal_error", f"{type(exc).__name__}: {exc}")
        else:
            # The bytes are verified and in place: a pause or cancel arriving now must not
            # leave the task half-recorded, so the bookkeeping finishes regardless.
            await asyncio.shield(self._completed(ctx, result))
        finally:
            task.runner = None
            self._runs.pop(task.id, None)
            self._schedule()

    async def _attempts(self, ctx: RunContext) -> FetchResult | None:
        if ctx.task.source is Source.OLLAMA:
            await run_pull(ctx, self.settings, self.instances)
            return None
        return await run_fetch(ctx, self.settings, self.logs.path(ctx.task.id), self._workers)

    async def _stop(self, task: Task, reason: str) -> None:
        """Ask the running attempt to stop; wait (bounded) until it has."""
        runner = task.runner
        if runner is None:
            return
        task.stop = reason
        runner.cancel()  # closes the pull stream, or tells the worker process to cancel
        await asyncio.wait({runner}, timeout=STOP_WAIT_S)

    async def _stopped(self, ctx: RunContext) -> None:
        task = ctx.task
        self.book.report(ctx, force=True, publish=False)
        if task.stop == "pause":
            self.logs.write(task.id, "paused")
            self.book.set_state(task, State.PAUSED, speed_bps=None, eta_s=None)
        elif task.stop == "cancel":
            await self._cancelled(task)
        elif task.stop == "shutdown":
            self.logs.write(task.id, "modelyard is stopping: will resume at the next start")

    async def _cancelled(self, task: Task) -> None:
        if task.path:
            await asyncio.to_thread(_discard, Path(task.path))
        self.logs.write(task.id, "cancelled: the partial file was removed")
        self.book.set_state(task, State.CANCELLED, finished_at=utcnow(), speed_bps=None, eta_s=None)
        self.metrics.pull_total.labels(model_name=task.label, status="cancelled").inc()

    def _failed(self, ctx: RunContext, code: str, detail: str) -> None:
        task = ctx.task
        self.book.report(ctx, force=True, publish=False)  # how far it got
        self.logs.write(task.id, f"failed: {code}: {detail}")
        self.book.set_state(
            task,
            State.FAILED,
            error=detail,
            error_code=code,
            finished_at=utcnow(),
            speed_bps=None,
            eta_s=None,
        )
        self.metrics.pull_total.labels(model_name=task.label, status="failed").inc()

    async def _completed(self, ctx: RunContext, result: FetchResult | None) -> None:
        """Verified and in place: saved with the model's source first, then announced."""
        task = ctx.task
        self.book.report(ctx, force=True, publish=False)
        done = ctx.meter.downloaded if result is None else result.size
        fields: dict[str, Any] = {
            "downloaded": done,
            "total": done,
            "finished_at": utcnow(),
            "speed_bps": None,
            "eta_s": None,
            "error": None,
            "error_code": None,
        }
        if result is not None:
            fields["sha256"] = result.sha256
        values = {**task.row_values(), **fields}
        request = {f: values[f] for f in _REQUEST_FIELDS if values.get(f) is not None}
        request.update(mode=task.mode)
        if task.instance_id:
            request["instance_id"] = task.instance_id
        await self.book.complete(task, fields, self._source_key(task), request)
        self.metrics.pull_total.labels(model_name=task.label, status="success").inc()
        if task.started_at is not None:
            seconds = (task.finished_at or utcnow()) - task.started_at
            self.metrics.pull_duration.observe(seconds.total_seconds())

    def _source_key(self, task: Task) -> SourceKey:
        """The catalog's key of the model a task produced."""
        if task.source is Source.OLLAMA:
            puller = registry.get(task.source.value)
            name = puller.catalog_name(task.model_name or "")
            return (puller.kind, task.instance_id or "default", name)
        models_dir = self.settings.resolved_models_dir.resolve()
        name = Path(task.path or "").resolve().relative_to(models_dir).as_posix()
        return local_key(name)

    async def _tick(self) -> None:
        """Refresh every running task's speed and save its progress about once a second."""
        while True:
            await asyncio.sleep(TICK_S)
            for ctx in list(self._runs.values()):
                if self.clock() - ctx.meter.published_at >= TICK_S:
                    self.book.report(ctx, force=True)


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
        mode=plan.mode,
        total=plan.total,
        force=plan.force,
        extra=dict(plan.extra),
    )


def _not_now(task: Task, verb: str) -> Conflict:
    return Conflict(
        f"download {task.id} is {task.state.value} and cannot be {verb}",
        code="invalid_download_state",
        hint="Pause queued or running downloads, resume paused ones, retry failed ones.",
    )


def _discard(dest: Path) -> None:
    try:
        discard_part(dest)
    except DownloadError as exc:
        log.warning("could not remove the part file of %s: %s", dest, exc.detail)
