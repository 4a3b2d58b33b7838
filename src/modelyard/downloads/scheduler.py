"""Which download runs when, and where each run ends (SPEC §5).

At most ``download_concurrency`` tasks run at once; the rest wait in a FIFO queue. A URL or
Hugging Face run is the URL engine in a worker process of its own (``worker_pool``), an Ollama
run a pull stream in the event loop (``execution``). A run ends completed, failed, or stopped
by a command: pause, cancel, delete, or modelyard's shutdown, which leaves the saved state as it
is so that the task resumes at the next start. Every run's speed is refreshed and its progress
saved about once a second, also while no bytes arrive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from modelyard.config import Settings
from modelyard.downloads.execution import Completion, RunContext, run_fetch, run_pull
from modelyard.downloads.http_engine import DownloadError, discard_part
from modelyard.downloads.repository import TaskRepository
from modelyard.downloads.specs import DownloadRequest
from modelyard.downloads.states import DownloadState
from modelyard.downloads.store import SourceKey
from modelyard.downloads.tasks import Task
from modelyard.downloads.worker_pool import WorkerPool
from modelyard.errors import IllegalTransition, ModelyardError
from modelyard.gguf.local import local_key
from modelyard.providers.registry import registry
from modelyard.runtimes.instances import InstanceRegistry

log = logging.getLogger("modelyard.downloads")
TICK_S = 1.0  # refresh speed (it decays during a stall) and save progress this often
STOP_WAIT_S = 30.0


class DownloadScheduler:
    """The queue of waiting tasks and the runs of the running ones."""

    def __init__(
        self,
        settings: Settings,
        repository: TaskRepository,
        instances: InstanceRegistry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.instances = instances
        self.clock = clock
        self._queue: deque[str] = deque()
        self._runs: dict[str, RunContext] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._closing = False
        self._workers = WorkerPool()

    def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick())
        self._schedule()

    async def close(self) -> None:
        """Stop the running tasks without changing their saved state, so they resume later."""
        self._closing = True
        if self._ticker is not None:
            self._ticker.cancel()
        running = [t for t in self.repository.tasks.values() if t.runner is not None]
        await asyncio.gather(*(self.stop(t, "shutdown") for t in running))
        await self._workers.close()

    def enqueue(self, task: Task) -> None:
        """Queue a task (in the queued state) behind the others; it starts when its turn comes."""
        self._queue.append(task.id)
        self._schedule()

    def dequeue(self, task: Task) -> None:
        if task.id in self._queue:
            self._queue.remove(task.id)

    async def stop(self, task: Task, reason: str) -> None:
        """Ask the running attempt to stop; wait (bounded) until it has."""
        runner = task.runner
        if runner is None:
            return
        task.stop = reason
        runner.cancel()  # closes the pull stream, or tells the worker process to cancel
        await asyncio.wait({runner}, timeout=STOP_WAIT_S)

    async def cancelled(self, task: Task) -> None:
        """Record a cancelled task, its partial file removed."""
        if task.path:
            await asyncio.to_thread(discard, Path(task.path))
        self.repository.cancelled(task)

    # -- running ----------------------------------------------------------------------------

    def _schedule(self) -> None:
        tasks = self.repository.tasks
        while not self._closing and self._queue:
            if sum(t.runner is not None for t in tasks.values()) >= self._concurrency:
                return
            task = tasks.get(self._queue.popleft())
            if task is not None and task.state is DownloadState.QUEUED:
                self._launch(task)

    @property
    def _concurrency(self) -> int:
        return self.settings.download_concurrency

    def _launch(self, task: Task) -> None:
        with task.lock:
            task.run += 1
            task.stop = None
        ctx = RunContext(self.repository, task, self.clock)
        self._runs[task.id] = ctx
        self.repository.set_state(task, DownloadState.DOWNLOADING)
        task.runner = asyncio.create_task(self._run(ctx), name=f"download-{task.id}")

    async def take_in_place(self, task: Task, size: int) -> None:
        """Complete a task with the file already in place, fetching nothing (seed 004's
        endpoint vouched for it by size): recorded like any download, not verified."""
        with task.lock:
            task.run += 1
        ctx = RunContext(self.repository, task, self.clock)
        self.repository.set_state(task, DownloadState.DOWNLOADING)
        ctx.progress(size, size)
        ctx.log(f"taken as found: {size} bytes, the server's Content-Length; no checksum")
        await self._completed(ctx, Completion(size))

    async def _run(self, ctx: RunContext) -> None:
        """Run one attempt series and move the task to where it ended."""
        task = ctx.task
        try:
            done = await self._attempts(ctx)
        except asyncio.CancelledError:
            if task.stop is None:
                raise
            await self._stopped(ctx)
        except DownloadError as exc:
            self._failed(ctx, exc.error_code, exc.detail)
        except IllegalTransition as exc:  # a bug: the task must still end in a true state
            log.exception("download %s changed state illegally", task.id)
            self._failed(ctx, exc.error_code, exc.detail)
        except ModelyardError as exc:
            self._failed(ctx, exc.error_code, exc.detail)
        except Exception as exc:  # a bug: the task must still end in a true state
            log.exception("download %s crashed", task.id)
            self._failed(ctx, "internal_error", f"{type(exc).__name__}: {exc}")
        else:
            # The bytes are verified and in place: a pause or cancel arriving now must not
            # leave the task half-recorded, so the bookkeeping finishes regardless.
            await asyncio.shield(self._completed(ctx, done))
        finally:
            task.runner = None
            self._runs.pop(task.id, None)
            self._schedule()

    async def _attempts(self, ctx: RunContext) -> Completion:
        if registry.puller(ctx.task.source) is not None:
            return await run_pull(ctx, self.settings, self.instances)
        log_path = self.repository.logs.path(ctx.task.id)
        return await run_fetch(ctx, self.settings, log_path, self._workers)

    async def _stopped(self, ctx: RunContext) -> None:
        task = ctx.task
        self.repository.report(ctx, force=True, publish=False)
        if task.stop == "pause":
            self.repository.write_log(task.id, "paused")
            self.repository.set_state(task, DownloadState.PAUSED)
        elif task.stop == "cancel":
            await self.cancelled(task)
        elif task.stop == "shutdown":
            self.repository.write_log(
                task.id, "modelyard is stopping: will resume at the next start"
            )

    def _failed(self, ctx: RunContext, code: str, detail: str) -> None:
        self.repository.report(ctx, force=True, publish=False)  # how far it got
        self.repository.fail(ctx.task, code, detail)

    async def _completed(self, ctx: RunContext, done: Completion) -> None:
        """Verified and in place: saved with the model's source first, then announced."""
        task = ctx.task
        self.repository.report(ctx, force=True, publish=False)
        # What recreate sends to fetch the model again (checked when the task was planned).
        request = DownloadRequest.model_construct(
            source=task.source.value,
            model_name=task.model_name,
            url=task.url,
            repo=task.repo,
            filename=task.filename,
            revision=task.revision,
            sha256=done.sha256 or task.sha256,
            mode=task.mode.value,
            instance_id=task.instance_id,
        )
        await self.repository.complete(task, done, self._source_key(task), request)

    def _source_key(self, task: Task) -> SourceKey:
        """The catalog's key of the model a task produced."""
        puller = registry.puller(task.source)
        if puller is not None:
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
                    self.repository.report(ctx, force=True)


def discard(dest: Path) -> None:
    """Remove ``dest``'s partial file; a failure is logged, never raised (the task's end is
    recorded either way)."""
    try:
        discard_part(dest)
    except DownloadError as exc:
        log.warning("could not remove the part file of %s: %s", dest, exc.detail)
